"""English for the cases / referrals / break-glass / transfers pages; ``python -m
mh_platform.web.translations.en_cases`` writes them into ``en/LC_MESSAGES/messages.po`` (adds the
ones not yet extracted, keeps every existing translation)."""

from __future__ import annotations

import pathlib

EN = {
    "草稿": "Draft", "已申请，待机构受理": "Requested, waiting for the institution", "机构已受理": "Accepted by the institution",
    "机构已婉拒，待改派": "Declined, to be re-routed", "已预约": "Scheduled", "已就诊": "Attended",
    "未到诊，待改约": "No-show, to be re-scheduled", "机构已反馈": "Feedback received", "学校跟进中": "School follow-up",
    "已结束": "Closed", "提交转介申请": "Submit the referral", "受理": "Accept", "婉拒": "Decline",
    "改派其他机构": "Re-route to another institution", "预约就诊": "Schedule an appointment", "改约": "Re-schedule",
    "登记已就诊": "Record attendance", "登记未到诊": "Record a no-show", "填写诊疗反馈": "Record clinical feedback",
    "开始学校跟进（复学）": "Start the school follow-up (return to school)", "结束转介": "Close the referral",
    "撤销转介": "Cancel the referral", "红色（I级）": "Red (I)", "橙色（II级）": "Orange (II)", "黄色（III级）": "Yellow (III)",
    "班级": "Class", "学校": "School", "县区": "County", "市": "City", "进行中": "Open", "交接中": "Handing over",
    "已结案": "Closed", "电话": "Phone", "面谈": "In person", "家访": "Home visit", "信息": "Message",
    "家长会谈": "Parent meeting", "暂无接诊能力": "No capacity", "不在服务范围": "Out of catchment",
    "年龄不在接诊范围": "Age out of range", "需其他专科": "Needs another specialty", "重复转介": "Duplicate",
    "其他（请说明）": "Other (explain)", "未见精神障碍": "No mental disorder", "适应障碍": "Adjustment disorder",
    "抑郁发作": "Depressive episode", "焦虑障碍": "Anxiety disorder", "双相障碍": "Bipolar disorder",
    "精神病性障碍": "Psychotic disorder", "创伤及应激相关障碍": "Trauma- and stress-related disorder",
    "神经发育障碍": "Neurodevelopmental disorder", "进食障碍": "Eating disorder", "物质使用相关": "Substance use",
    "其他": "Other", "随访": "Follow-up", "计划复查": "Plan review", "转介待办": "Referral to act on",
    "学生已转学，需发起交接": "The student moved school: hand the case over",
    "待接收的个案交接": "A case handover to accept", "请填写时间。": "Please enter a time.",
    "时间格式不正确。": "The time is not valid.", "已逾期：%(n)d": "Overdue: %(n)d", "超时转介：%(n)d": "Overdue referrals: %(n)d",
    "待复核的紧急查阅：%(n)d": "Emergency access uses to review: %(n)d",
    "个案待办（一生一策）": "Case tasks (support plans)", "待处理的转介": "Referrals to act on",
    "转介督办与紧急查阅复核": "Referral oversight and emergency-access review", "个案已建立。": "The case was opened.",
    "计划条目已添加。": "The plan line was added.", "计划条目已更新。": "The plan line was updated.",
    "随访已安排。": "The follow-up was scheduled.", "随访已记录。": "The follow-up was recorded.",
    "家校沟通已记录。": "The guardian contact was recorded.", "个案已结案。": "The case was closed.",
    "转介已创建。": "The referral was created.", "已向新学校发起交接。": "A handover was requested from the new school.",
    "已完成：%(a)s": "Done: %(a)s",
    "紧急查阅已启用（限时），本次使用将由他人复核。": "Emergency access is on (time-limited); another person will review this use.",
    "复核已记录。": "The review was recorded.", "个案已接收。": "The case was taken over.", "机构已添加。": "The institution was added.",
    "已更新。": "Updated.", "紧急查阅": "Emergency access", "紧急查阅（限时）": "Emergency access (time-limited)",
    "紧急查阅仅用于红色个案的紧急情况。启用后您可在 %(h)d 小时内查看该个案；个案心理教师与市级将收到通知，本次使用将由另一位人员复核是否合理。":
        "Emergency access is only for emergencies on red cases. You can read the case for %(h)d hours; the case's "
        "counsellor and the city are notified, and another person reviews whether the use was justified.",
    "启用理由（必填，加密保存）": "Reason (required, stored encrypted)", "启用紧急查阅": "Use emergency access",
    "个案": "Case", "个案列表": "Cases",
    "您正在使用限时紧急查阅，本次查看已记录并将由他人复核。": "You are using time-limited emergency access; this view is logged and will be reviewed.",
    "校领导督导视图：不显示个案记录内容。": "School leader's supervision view: no case notes are shown.",
    "建档": "Opened", "已告知分管校长": "School leader informed", "个案摘要": "Case summary",
    "学生已转学：发起个案交接": "The student moved school: request a handover",
    "交接说明（加密保存，仅接收学校心理教师可见）": "Handover note (encrypted; only the receiving school's counsellors see it)",
    "发起交接": "Request the handover", "支持计划（一生一策）与复学计划": "Support plan and return-to-school plan",
    "类型": "Type", "目标": "Goal", "措施": "Action", "复查日期": "Review date", "状态": "Status", "复学": "Return to school",
    "支持": "Support", "已完成": "Done", "已取消": "Dropped", "完成": "Done", "尚无计划条目。": "No plan lines yet.",
    "添加计划条目": "Add a plan line", "支持计划": "Support plan", "复学计划": "Return-to-school plan",
    "复查时间": "Review time", "添加": "Add", "待完成": "To do", "已逾期": "Overdue",
    "随访记录（加密保存）": "Follow-up note (stored encrypted)", "记录随访": "Record the follow-up",
    "尚无随访。": "No follow-ups yet.", "安排随访时间": "Follow-up time", "安排随访": "Schedule a follow-up",
    "家校沟通记录": "Guardian contacts", "尚无记录。": "Nothing recorded yet.", "记录一次家校沟通": "Record a guardian contact",
    "方式": "Method", "沟通内容（加密保存）": "What was said (stored encrypted)", "保存": "Save",
    "绿色通道转介": "Green-channel referral", "当前层级": "Tier", "时限": "Due", "已超时": "Overdue",
    "转介原因：": "Reason: ", "诊疗反馈：": "Clinical feedback: ", "复学建议：": "Return-to-school advice: ",
    "尚无转介。": "No referrals yet.", "发起绿色通道转介": "Make a green-channel referral", "转介机构": "Institution",
    "转介原因（加密保存，机构可见）": "Reason (encrypted; the institution sees it)", "监护人同意": "Guardian consent",
    "监护人已同意": "The guardian consented",
    "紧急情况，未获同意（需说明理由，将被审计）": "Emergency without consent (give a reason; audited)",
    "未获同意的理由（仅紧急情况）": "Why without consent (emergencies only)", "结案": "Close the case",
    "结案理由（加密保存）": "Reason for closing (stored encrypted)", "个案管理": "Cases",
    "个案管理（一生一策）": "Cases (support plans)",
    "此处列出您辖区内的红色个案。查看个案内容需启用限时紧急查阅，每次使用都会通知个案心理教师和市级，并由另一位人员复核。":
        "The red cases of your area. Reading a case needs time-limited emergency access; each use notifies the "
        "case's counsellor and the city and is reviewed by another person.",
    "紧急查阅复核队列": "Emergency-access review queue", "转介督办": "Referral oversight", "我的待办": "My tasks",
    "事项": "Task", "学生编号": "Student code", "到期": "Due", "查看交接": "View the handover", "打开": "Open",
    "打开个案": "Open the case", "已复核确认、尚未建档的预警": "Confirmed flags without a case",
    "个案摘要（加密保存）": "Case summary (stored encrypted)", "建立个案": "Open a case", "全部": "All", "等级": "Level",
    "建档时间": "Opened", "下次随访": "Next follow-up", "逾期": "overdue", "暂无个案。": "No cases.",
    "合作机构": "Partner institutions", "合作精神卫生专业机构": "Partner mental-health institutions", "名称": "Name",
    "代码": "Code", "医生账户": "Clinician accounts", "接收转介": "Takes referrals", "已停用": "Inactive",
    "停用": "Deactivate", "启用": "Activate", "添加机构": "Add an institution",
    "代码（小写字母、数字、-）": "Code (lower-case letters, digits, -)", "转介": "Referral", "转介列表": "Referrals",
    "返回个案": "Back to the case", "预约": "Appointment", "学生信息（最少必要）": "Student (minimum necessary)",
    "编号": "Code", "女": "Female", "男": "Male", "岁": " years",
    "紧急情况下未获监护人同意即转介。": "Referred in an emergency without the guardian's consent.",
    "理由：": "Reason: ", "监护人已同意。": "The guardian consented.",
    "诊疗反馈（仅个案心理教师与本机构可见）": "Clinical feedback (only the case's counsellor and the institution)",
    "诊断类别：": "Diagnosis category: ", "建议：": "Recommendations: ", "操作": "Actions",
    "紧急情况，未获同意": "Emergency without consent", "婉拒原因": "Reason for declining",
    "说明（选“其他”时必填）": "Explanation (required for “Other”)", "改派至": "Re-route to",
    "撤回原机构的理由": "Why withdraw from this institution", "就诊时间": "Appointment time", "改约理由": "Why re-schedule",
    "诊断类别": "Diagnosis category", "诊疗建议（加密保存）": "Recommendations (stored encrypted)",
    "复学建议（加密保存）": "Return-to-school advice (stored encrypted)",
    "可同时建立一条复学计划：": "You can add a return-to-school plan line now:", "复学目标": "Return-to-school goal",
    "复学措施": "Return-to-school action", "理由（加密保存）": "Reason (stored encrypted)", "经过": "History",
    "超时上报至": "overdue, escalated to ", "超时提醒": "overdue reminder", "本机构收到的转介": "Referrals to this institution",
    "机构": "Institution", "层级": "Tier", "暂无转介。": "No referrals.", "紧急查阅复核": "Emergency-access review",
    "每一次紧急查阅都须由使用者以外的人员复核。查看理由会记入访问日志。":
        "Every use of emergency access is reviewed by someone other than its user. Reading a reason is logged.",
    "仍有效": "still active", "这是您本人的使用，须由他人复核。": "This is your own use; someone else must review it.",
    "合理": "Justified", "不合理": "Not justified", "暂无待复核的使用。": "Nothing to review.",
    "显示已复核的记录": "Show reviewed uses", "已复核": "Reviewed", "个案交接": "Case handover", "原学校": "Previous school",
    "交接说明": "Handover note", "接收个案": "Take over the case", "已接收。": "Taken over.",
    "进行中的红色个案": "Open red cases", "可执行操作：": "You can: ",
}


def apply(po_path: pathlib.Path, table: dict[str, str] | None = None, locale: str = "en") -> int:
    """Fill (or add) the translations of ``table`` (default: ``EN``) where a catalog has none or a fuzzy
    one; other translations are left alone. Shared by the other fill modules here."""
    from babel.messages.pofile import read_po, write_po

    with po_path.open("rb") as f:
        catalog = read_po(f, locale=locale)
    n = 0
    for zh, en in (EN if table is None else table).items():
        msg = catalog.get(zh)
        if msg is None:
            catalog.add(zh, en)
            n += 1
        elif not msg.string or msg.fuzzy:
            msg.string = en
            msg.flags.discard("fuzzy")
            n += 1
    with po_path.open("wb") as f:
        write_po(f, catalog, width=0)
    return n


if __name__ == "__main__":
    here = pathlib.Path(__file__).resolve().parent
    print(apply(here / "en" / "LC_MESSAGES" / "messages.po"), "strings filled")
