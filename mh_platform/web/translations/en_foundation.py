"""English for the foundation's strings; ``python -m mh_platform.web.translations.en_foundation``
writes them into ``en/LC_MESSAGES/messages.po`` (keeps existing translations of other areas)."""

from __future__ import annotations

import pathlib

EN = {
    "会话已超时，请重新登录。": "Your session has timed out. Please sign in again.",
    "请求有误。": "Bad request.",
    "请先登录。": "Please sign in first.",
    "您的角色无权进行此操作。": "Your role may not do this.",
    "未找到，或不在您的权限范围内。": "Not found, or outside your scope.",
    "不支持此请求方式。": "This request method is not supported.",
    "状态已变化，无法进行此操作，请刷新后重试。": "The state has changed; this action is no longer possible. Refresh and try again.",
    "提交的内容过大。": "The submitted content is too large.",
    "输入有误，请检查后重试。": "Some input is invalid. Please check and try again.",
    "尝试过于频繁，请稍后再试。": "Too many attempts. Please try again later.",
    "服务器出错，请稍后再试。": "Server error. Please try again later.",
    "服务暂时不可用，请稍后再试。": "The service is temporarily unavailable. Please try again later.",
    "请求无法完成。": "The request could not be completed.",
    "表单已过期或无效，请返回刷新页面后重试。": "The form has expired or is invalid. Go back, refresh the page and try again.",
    "表单已过期或无效，请刷新页面后重试。": "The form has expired or is invalid. Refresh the page and try again.",
    "返回输入验证码": "Back to code entry",
    "用户名": "Username",
    "请输入用户名": "Enter your username",
    "密码": "Password",
    "请输入密码": "Enter your password",
    "登录": "Log in",
    "动态验证码": "One-time code",
    "请输入6位数字验证码": "Enter the 6-digit code",
    "验证码是6位数字": "The code has 6 digits",
    "验证": "Verify",
    "当前密码": "Current password",
    "请输入当前密码": "Enter your current password",
    "新密码": "New password",
    "请输入新密码": "Enter a new password",
    "新密码长度须为%(min)d到%(max)d个字符": "The new password must have %(min)d to %(max)d characters",
    "再次输入新密码": "Repeat the new password",
    "请再次输入新密码": "Repeat the new password",
    "两次输入的新密码不一致": "The two new passwords differ",
    "修改密码": "Change password",
    "心理委员": "Class psychology monitor",
    "班主任": "Head teacher",
    "心理教师": "School counsellor",
    "分管校长": "School leader",
    "县区教育局/心理中心": "County education bureau / psychology centre",
    "市教育局/未成年人心理健康辅导站": "City education bureau / youth mental-health centre",
    "精神卫生机构医生": "Institution clinician",
    "系统管理员": "System administrator",
    "市": "City",
    "县区": "County/district",
    "学校": "School",
    "年级": "Grade",
    "班级": "Class",
    "红色（I级）": "Red (I)",
    "橙色（II级）": "Orange (II)",
    "黄色（III级）": "Yellow (III)",
    "用户名或密码错误，或账户已被暂时锁定。": "Wrong username or password, or the account is temporarily locked.",
    "请重新登录。": "Please sign in again.",
    "验证码不正确或已过期。": "The code is wrong or has expired.",
    "您已安全退出。": "You have signed out.",
    "当前密码不正确。": "The current password is wrong.",
    "新密码不能与当前密码相同。": "The new password must differ from the current one.",
    "密码已修改，请用新密码重新登录。": "Password changed. Please sign in with the new password.",
    "已锁定账户：%(n)d": "Locked accounts: %(n)d",
    "已停用账户：%(n)d": "Disabled accounts: %(n)d",
    "我范围内的学生": "Students in my scope",
    "账户状态": "Accounts",
    "学生心理健康预警平台": "Student Mental-Health Early-Warning Platform",
    "学生心理健康四级预警平台": "Student Mental-Health Four-Tier Early-Warning Platform",
    "主导航": "Main navigation",
    "首页": "Home",
    "退出": "Log out",
    "需要帮助？心理援助热线 %(hotline)s；%(room)s": "Need help? Psychological support hotline %(hotline)s; %(room)s",
    "修改后，所有设备上的登录都会失效，需要用新密码重新登录。": "After the change every session on every device ends; sign in again with the new password.",
    "连续多次输入错误后，账户将被暂时锁定。忘记密码请联系学校的系统管理员。": "After several wrong attempts the account is locked for a while. If you forgot your password, ask your system administrator.",
    "二次验证": "Second factor",
    "您的角色需要动态验证码。请在手机验证器应用（如“腾讯身份验证器”“Google Authenticator”）中手动添加以下密钥，然后输入应用显示的6位数字。": "Your role needs a one-time code. Add the key below by hand in an authenticator app on your phone, then enter the 6-digit code it shows.",
    "密钥": "Key",
    "otpauth 链接": "otpauth URI",
    "请输入验证器应用中显示的6位数字。": "Enter the 6-digit code shown in your authenticator app.",
    "返回首页": "Back to home",
    "您好，%(name)s": "Hello, %(name)s",
    "名在读学生": "enrolled students",
    "待您处理": "Waiting for you",
    "暂时无法显示": "Temporarily unavailable",
    "目前没有需要您处理的事项。": "Nothing is waiting for you.",
    "学生名单": "Student roster",
    "姓名": "Name",
    "化名编号": "Pseudonym",
    "性别": "Sex",
    "出生年份": "Birth year",
    "学籍号": "Student number",
    "共 %(n)d 名学生。查看姓名会记入访问日志。": "%(n)d students. Viewing names is recorded in the access log.",
    "女": "F",
    "男": "M",
    "翻页": "Pages",
    "上一页": "Previous",
    "下一页": "Next",
}


def apply(po_path: pathlib.Path) -> int:
    from babel.messages.pofile import read_po, write_po

    with po_path.open("rb") as f:
        catalog = read_po(f, locale="en")
    n = 0
    for msg in catalog:
        if not msg.id or not isinstance(msg.id, str):
            continue
        if msg.id in EN and (not msg.string or msg.fuzzy):
            msg.string = EN[msg.id]
            msg.flags.discard("fuzzy")
            n += 1
        elif msg.fuzzy:  # pybabel's guess from a similar string is wrong more often than not
            msg.string = ""
            msg.flags.discard("fuzzy")
    with po_path.open("wb") as f:
        write_po(f, catalog, width=0)
    return n


if __name__ == "__main__":
    here = pathlib.Path(__file__).resolve().parent
    print(apply(here / "en" / "LC_MESSAGES" / "messages.po"), "strings filled")
