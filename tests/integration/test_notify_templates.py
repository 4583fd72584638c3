"""Every notice template is known to the outbox sender without importing the area that uses it
(a bare `mhp notify send-pending` process renders case and referral notices too)."""

import subprocess
import sys


def test_sender_knows_every_template_without_area_imports():
    code = ("import sys; from mh_platform.services import notify; "
            "assert 'mh_platform.services.cases' not in sys.modules; "
            "print(','.join(sorted(notify.TEMPLATES)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    names = set(out.stdout.strip().split(","))
    assert {"case_red_opened", "referral_received", "referral_updated", "referral_overdue", "breakglass_opened",
            "transfer_requested", "transfer_accepted", "flag_needs_action"} <= names


def test_no_template_names_a_person():
    from mh_platform.services import notify

    for t in notify.TEMPLATES.values():
        for text in (t.subject_zh, t.subject_en, t.body_zh, t.body_en):
            assert "{name" not in text and "{student" not in text
