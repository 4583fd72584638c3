"""Password rules (services/passwords.py): ASVS 5.0 6.2.1/6.2.4/6.2.12, security test plan T12."""

from __future__ import annotations

import pytest

from mh_platform.core.errors import ValidationFailed
from mh_platform.services.passwords import check_password_rules


@pytest.mark.parametrize("password", [
    "1234567890", "password123", "qwertyuiop", "1qaz2wsx3edc", "aaaaaaaaaa", "iloveyou123", "abcdefghij",
    "Password2026",
])
def test_common_and_easily_guessed_passwords_are_refused(password):
    with pytest.raises(ValidationFailed, match="too common"):
        check_password_rules(password)


@pytest.mark.parametrize(("password", "inputs"), [
    ("zhang.wei 2026 autumn", ("zhang.wei",)),
    ("my counsellor password 7", ("t.counsellor",)),
    ("王老师的密码是这个啊", ("wang", "王老师")),
])
def test_a_password_built_on_the_user_name_is_refused(password, inputs):
    with pytest.raises(ValidationFailed, match="user name"):
        check_password_rules(password, user_inputs=inputs)


@pytest.mark.parametrize("password", ["correct horse 1", "Demo-2026-pass", "海上明月共潮生 1990", "plum river lantern"])
def test_long_unusual_passwords_pass_without_composition_rules(password):
    check_password_rules(password, user_inputs=("t.counsellor", "李老师"))


def test_length_bounds():
    with pytest.raises(ValidationFailed, match="at least 10"):
        check_password_rules("Xq7#pLm2z")
    with pytest.raises(ValidationFailed, match="too long"):
        check_password_rules("x" * 201)
    check_password_rules("plum river lantern " * 10)  # 190 characters: allowed, and checked quickly
