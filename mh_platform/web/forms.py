"""Forms of the foundation pages (Flask-WTF: every form carries a CSRF token)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp

from mh_platform.services.passwords import MIN_LENGTH


class LoginForm(FlaskForm):
    username = StringField(_l("用户名"), validators=[DataRequired(_l("请输入用户名")), Length(max=64)],
                           render_kw={"autocomplete": "username", "autocapitalize": "none"})
    password = PasswordField(_l("密码"), validators=[DataRequired(_l("请输入密码")), Length(max=200)],
                             render_kw={"autocomplete": "current-password"})
    submit = SubmitField(_l("登录"))


class TotpForm(FlaskForm):
    code = StringField(_l("动态验证码"), validators=[DataRequired(_l("请输入6位数字验证码")),
                                                   Regexp(r"^\s*\d{6}\s*$", message=_l("验证码是6位数字"))],
                       render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"})
    submit = SubmitField(_l("验证"))


class ChangePasswordForm(FlaskForm):
    current = PasswordField(_l("当前密码"), validators=[DataRequired(_l("请输入当前密码"))],
                            render_kw={"autocomplete": "current-password"})
    new = PasswordField(_l("新密码"), validators=[
        DataRequired(_l("请输入新密码")),
        Length(min=MIN_LENGTH, max=200, message=_l("新密码长度须为%(min)d到%(max)d个字符")),
    ], render_kw={"autocomplete": "new-password"})
    confirm = PasswordField(_l("再次输入新密码"), validators=[DataRequired(_l("请再次输入新密码")),
                                                         EqualTo("new", message=_l("两次输入的新密码不一致"))],
                            render_kw={"autocomplete": "new-password"})
    submit = SubmitField(_l("修改密码"))
