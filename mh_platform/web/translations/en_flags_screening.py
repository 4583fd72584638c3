"""English for the flags, concerns, screening and student pages (and the page error prefixes);
``python -m mh_platform.web.translations.en_flags_screening`` writes them into
``en/LC_MESSAGES/messages.po`` (adds the ones not yet extracted, keeps every other translation).

The crisis help box of the student area ("你并不孤单" …) is shown after a critical answer: keep its
English plain and warm, and every help contact (hotline number, room) exactly as in the Chinese."""

from __future__ import annotations

import pathlib

EN = {
    # flags: states, actions, events
    "待确认": "To acknowledge", "已确认，待访谈": "Acknowledged, interview pending", "已访谈复核": "Assessed by interview",
    "干预中": "In intervention", "转介中": "Referred", "持续关注": "Monitoring",
    "申请结束，待心理教师复核": "Closure requested, awaiting the counsellor's review",
    "确认收到": "Acknowledge", "上报上一级": "Escalate to the next tier", "访谈确认": "Confirm after interview",
    "调整等级": "Change the level", "排除（误报）": "Dismiss (false alarm)", "开始干预": "Start an intervention",
    "启动转介": "Refer", "转为持续关注": "Move to monitoring", "结束": "Close", "申请结束": "Request closure",
    "同意结束": "Approve closure", "不同意结束": "Reject closure", "预警产生": "Flag raised",
    "已确认收到": "Acknowledged", "已上报": "Escalated", "等级调整": "Level changed",
    "新证据，等级上调": "New evidence, level raised",
    # concerns
    "已收到": "Received", "处理中": "In progress", "已处理完毕": "Dealt with",
    "紧急（现在就需要关注）": "Urgent (needs attention now)", "尽快（这几天）": "Soon (in the next few days)",
    "一般": "Routine", "情绪低落或明显变化": "Low mood or a marked change", "自伤迹象或言语": "Signs or talk of self-harm",
    "退缩、孤立": "Withdrawn or isolated", "人际冲突或受欺凌": "Conflict with others, or being bullied",
    "家庭变故": "Upheaval at home", "行为异常": "Unusual behaviour",
    "已提交，谢谢你。老师会尽快关注。": "Sent. Thank you — a teacher will look into it soon.",
    "未能完成：请从名单中选择同学。": "Not done: please choose a student from the list.",
    "已超时：%(n)d": "Overdue: %(n)d", "待处理预警": "Flags to handle", "我报告的关注": "Concerns I reported",
    # screening labels
    "未开始": "Not yet open", "同意": "Granted", "不同意": "Refused", "已撤回": "Withdrawn", "未回收": "Not returned",
    "进行中的心理测评": "Screenings in progress", "请填写开始和结束时间": "Please enter the opening and closing times",
    "测评已创建，将在开始时间自动开放。": "The screening was created; it opens automatically at its start time.",
    "已保存。": "Saved.",
    # student code page messages (the Chinese text carries an English line too; in English, English only)
    "验证码无效，请核对后重新输入。 The code is not valid.": "The code is not valid. Please check it and try again.",
    "本次测评不在开放时间内。 This screening is not open now.": "This screening is not open right now.",
    "暂时无法参加本次测评，请联系班主任。 You cannot take part now; please ask your head teacher.":
        "You cannot take part in this screening right now. Please ask your head teacher.",
    "你已完成本次测评，谢谢！ You have already finished. Thank you!":
        "You have already finished this screening. Thank you!",
    "第%(n)d题": "Question %(n)d",
    "有答案无法识别，请重新选择。 Some answers were not recognised.":
        "Some answers were not recognised. Please choose them again.",
    # flags pages
    "学生": "Student", "期限": "Due", "查看": "View", "暂无。": "None yet.", "报告关注": "Report a concern",
    "报告一名同学/学生的情况": "Report a concern about a classmate or student",
    "你看到的情况只会交给老师处理。提交后你只能看到处理进度。如果有人现在有危险，请立即告诉老师或拨打 %(h)s。":
        "What you report goes only to teachers, who will act on it. After you send it, you will only see how it is "
        "progressing. If someone is in danger right now, tell a teacher at once or call %(h)s.",
    "看到了什么": "What did you notice?", "有多紧急": "How urgent is it?",
    "具体情况（加密保存，只有老师能看到）": "Details (stored encrypted; only teachers can see them)",
    "提交": "Submit", "我提交过的": "What I have reported", "时间": "Time", "类别": "Category",
    "紧急程度": "Urgency", "进度": "Progress", "预警详情": "Flag details", "返回工作台": "Back to the flag desk",
    "预警": "Flag", "学校 / 班级": "School / class", "确认期限": "Acknowledge by", "处理期限": "Handle by",
    "应对建议": "Suggested response", "新等级": "New level", "理由（必填，加密保存）": "Reason (required, stored encrypted)",
    "依据（仅心理教师可见）": "Evidence (counsellors only)", "总分": "Total score", "记录": "Record",
    "查看理由（将记入查阅日志）": "View the reason (this is logged)", "消息": "Messages", "暂无消息。": "No messages.",
    "预警工作台": "Flag desk",
    "本班需要关注的学生。这里只显示等级和应对建议，不显示测评分数或作答。":
        "Students in your class who need attention. Only the level and the suggested response are shown here, "
        "never screening scores or answers.",
    "本班预警": "Flags in your class", "报告一名学生的情况": "Report a concern about a student",
    "红色 %(r)d · 橙色 %(o)d · 黄色 %(y)d · 已超时 %(d)d": "Red %(r)d · Orange %(o)d · Yellow %(y)d · Overdue %(d)d",
    "本校预警（超时优先，按等级和期限排序）": "Flags at this school (overdue first, then by level and due time)",
    "本校红色预警": "Red flags at this school", "超时未处理的预警": "Overdue flags",
    "上报至本级的预警": "Flags escalated to this tier", "按学校": "By school", "未结束": "Open",
    "督导关注（红色预警，学校处理中）": "Under supervision (red flags the schools are handling)",
    "聚集性预警": "Clusters of flags", "%(n)d 项红/橙预警": "%(n)d red/orange flags",
    "建议：对相关班级开展定向复筛": "Suggestion: re-screen the classes concerned",
    "关注记录（报告人所见）": "Concerns reported (what the reporter saw)", "无": "None",
    "查看关注内容与理由（将记入查阅日志）": "View the concern notes and reasons (this is logged)",
    # screening pages
    "导入纸质问卷结果": "Import paper questionnaire results", "完成情况：": "Completion: ", "单位": "Unit",
    "应测": "Expected", "已同意": "Consented", "已开始": "Started", "建议重测": "Re-test advised", "合计": "Total",
    "为保护隐私不显示": "Not shown, to protect privacy", "未完成名单": "Not yet finished", "打印验证码": "Print codes",
    "区县和市级视图中，人数为1–4的格子不显示（*），以免识别到个人；这样的单位整行不显示，并另有一个单位一同不显示，使之无法由合计推算。":
        "In county and city views, counts of 1–4 are not shown (*), so that no one can be identified; such a unit's "
        "whole row is hidden, together with one more unit, so that it cannot be worked out from the totals.",
    "导出本表：": "Download this table: ",
    "* 为保护隐私不显示：含1–4人格子的单位整行不显示，并另有一个单位一同不显示。":
        "* Not shown, to protect privacy: a unit with a count of 1–4 is hidden whole, together with one more unit.",
    "知情同意": "Consent", "监护人知情同意回收情况": "Guardian consent returns", "人数": "Students",
    "同意率": "Consent rate", "回收方式": "How it was returned", "纸质": "On paper", "线上": "Online",
    "当前": "Current", "不变": "No change", "撤回": "Withdraw", "导入学生名单": "Import the student roster",
    "CSV（UTF-8 或 GBK）或 XLSX，列：学校、年级、班级、学籍号、姓名、性别、出生年份、监护人姓名、监护人关系、监护人电话。":
        "CSV (UTF-8 or GBK) or XLSX with the columns school, grade, class, student_number, name, sex, birth_year, "
        "guardian_name, guardian_relation, guardian_phone (the Chinese column names work too).",
    "CSV 或 XLSX，列：学籍号、量表（如 phq9），以及题号 1、2、3……；是非题填 是/否/拒绝回答。":
        "CSV or XLSX with the columns student_number, instrument (e.g. phq9) and the item numbers 1, 2, 3 …; "
        "answer yes/no items with yes, no or refused.",
    "导入完成。": "Import complete.",
    "共 %(r)d 行：新增 %(n)d，变更 %(c)d，已存在 %(d)d；新建班级/年级 %(u)d。":
        "%(r)d rows: %(n)d new, %(c)d changed, %(d)d already present; %(u)d new classes/grades.",
    "共 %(r)d 行：%(n)d 份问卷，%(a)d 个作答，%(s)d 名学生。":
        "%(r)d rows: %(n)d questionnaires, %(a)d answers, %(s)d students.",
    "错误（全部修正后才能导入，不会部分导入）": "Errors (fix all of them to import; nothing is imported partly)",
    "行": "Row", "列": "Column", "问题": "Problem", "文件": "File", "预览": "Preview", "导入": "Import",
    "心理测评": "Screenings", "新建测评": "New screening", "测评列表": "Screenings", "开放时间": "Open",
    "量表": "Instruments", "暂无测评。": "No screenings yet.", "范围（学校、区县或全市）": "Scope (school, county or the whole city)",
    "量表按年龄自动选择：3–6年级 SCARED、CES-DC（9岁起加K10，10岁起加ASQ）；7–12年级 PHQ-9、GAD-7、ASQ、K10、WHO-5。":
        "Instruments are chosen by age: grades 3–6 SCARED, CES-DC (plus K10 from age 9 and ASQ from age 10); "
        "grades 7–12 PHQ-9, GAD-7, ASQ, K10, WHO-5.",
    "开始时间（北京时间）": "Opens (Beijing time)", "结束时间（北京时间）": "Closes (Beijing time)", "创建": "Create",
    "测评验证码": "Screening codes",
    "每次打印都会生成新的验证码，之前打印的纸条随即失效（已开始作答的学生用新码可继续）。请沿虚线剪开分发。":
        "Each printing makes new codes, and slips printed before stop working (students who have started can "
        "continue with the new code). Cut along the dotted lines and hand them out.",
    "请使用浏览器的打印功能（Ctrl+P）。": "Use your browser's print function (Ctrl+P).", "返回": "Back",
    "打开 %(url)s 输入验证码。截止：%(d)s": "Open %(url)s and enter the code. Closes: %(d)s",
    "无需参加（未取得监护人同意）": "Does not take part (no guardian consent)", "作答中": "Answering",
    "全部完成。": "Everyone has finished.",
    # student area: the crisis help box (shown after a critical answer) — warm, plain, contacts unchanged
    "你并不孤单": "You are not alone",
    "谢谢你如实回答。如果你现在感到很难受，或者有伤害自己的想法，请马上告诉老师、家长或你信任的大人。":
        "Thank you for answering honestly. If you are feeling very bad right now, or having thoughts of hurting "
        "yourself, please tell a teacher, a parent or another adult you trust straight away.",
    "全国心理援助热线：": "National psychological assistance hotline: ", "（24小时）": " (24 hours)",
    "学校：": "At school: ",
    "学校的心理老师会尽快和你聊一聊。你可以继续答题。":
        "The school's counsellor will talk with you soon. You can carry on answering if you like.",
    "学校心理辅导室": "the counselling room",
    # student area: pages
    "心理健康测评": "Wellbeing questionnaire", "请输入测评验证码": "Enter your code",
    "验证码在班主任发给你的纸条上，共10位（例如 7KQ2M-XW9DH）。":
        "Your code is on the slip your head teacher gave you. It has 10 characters (for example 7KQ2M-XW9DH).",
    "验证码": "Code", "不区分大小写，可以不输入短横线。": "Capital or small letters both work, and you can leave out the dash.",
    "开始": "Start", "已完成，谢谢你！": "All done. Thank you!",
    "你的回答已经保存。请关闭此页面，把电脑交给下一位同学。":
        "Your answers are saved. Please close this page and pass the computer to the next student.",
    "已暂停": "Paused", "你的回答已经保存。下次输入同一个验证码即可继续。":
        "Your answers are saved. Enter the same code next time to carry on.",
    "已退出": "Signed out", "下一位同学从这里开始": "The next student starts here", "继续": "Continue",
    "第 %(i)d / %(n)d 部分，已完成约 %(p)d%%": "Part %(i)d of %(n)d, about %(p)d%% done",
    "提交本部分，继续": "Submit this part and continue", "提交并完成": "Submit and finish",
    "暂时离开（答案已保存，可用同一验证码继续）": "Take a break (your answers are saved; use the same code to carry on)",
    # error plumbing
    "未能完成：%(error)s": "Not done: %(error)s", "未能建档：%(error)s": "Could not open the case: %(error)s",
    "未能启用：%(error)s": "Could not start: %(error)s", "未能接收：%(error)s": "Could not take over: %(error)s",
    "记录内容": "The note", "理由": "The reason", "随访时间": "The follow-up time", "诊疗建议": "The recommendations",
    "复学建议": "The return-to-school advice", "此项": "This field", "待接收": "waiting to be taken over",
    "已接收": "already taken over",
    # flag detail, clusters, paging, staff concern wording
    "注意：以下量表没有中文条目（其授权中文版未随平台提供），使用中文界面的学生将看到英文原文：%(names)s。请在部署中加入已授权的中文版本，或调整测评组合（见 docs/instruments.md）。":
        "Note: these instruments have no Chinese item wording (their licensed Chinese version is not shipped "
        "with the platform), so students using the Chinese interface will read them in English: %(names)s. "
        "Add the licensed Chinese wording to this deployment, or change the battery (see docs/instruments.md).",
    "以下行含关键条目阳性作答（如 PHQ-9 第9题、ASQ）。文件有错误、不会导入，因此这些学生尚未产生预警：请现在就按学籍号联系这些学生，并尽快修正文件后重新导入。行：%(lines)s":
        "These rows answer a critical item positively (such as PHQ-9 item 9, or the ASQ). The file has errors "
        "and will not be imported, so no flag has been raised for these students yet: reach them now by their "
        "student numbers, then fix the file and import it soon. Rows: %(lines)s",
    "新证据，重新确认": "New evidence: triage again", "随学生转到新班级或学校": "Moved with the student to a new class or school",
    "还有 %(n)d 题没有作答（第 %(items)s 题）。可以回去补上；如果不想回答，再点一次提交即可。":
        "%(n)d questions are not answered yet (number %(items)s). You can go back and answer them; if you would "
        "rather not, just press submit again.", "测评得分区间": "Screening score band", "关键条目": "Critical item",
    "关键条目未作答": "Critical item not answered", "较上次测评明显加重": "Clearly worse than the last screening",
    "关注报告": "Concern report", "模型关注信号": "Model watch signal", "第%(n)s题": "Item %(n)s",
    "作答质量存疑，建议重测或访谈": "Answer quality in doubt: re-administer or interview",
    "已提交。该关注已交由本校心理教师（学校层级）确认和跟进。":
        "Submitted. The concern has gone to the school's counsellor (school tier) to confirm and follow up.",
    "分页": "Pages", "共 %(n)d 项，第 %(p)d/%(pp)d 页": "%(n)d in all, page %(p)d of %(pp)d",
    "更多（下一页）": "More (next page)", "范围": "Scope", "时间窗口": "Time window", "红/橙预警数": "Red/orange flags",
    "产生时间": "Raised at", "计入的预警（您权限范围内）": "Flags counted (within your scope)",
    "返回预警工作台": "Back to the flag queue",
    "您提交的关注会生成一项学校层级的预警，由本校心理教师确认和跟进；处理进度可在本页和预警工作台查看。如学生现在有危险，请立即采取安全措施并拨打 %(h)s。":
        "A concern you submit opens a school-tier flag that the school's counsellor confirms and follows up; "
        "you can follow its progress here and in the flag queue. If the student is in danger now, keep them safe "
        "at once and call %(h)s.",
    "具体情况（加密保存，仅心理教师和您本人可查看）": "What you saw (stored encrypted; only the counsellor and you can read it)",
    "关注内容仅班主任和心理教师可查看。": "Concern notes can be read only by the head teacher and the counsellor.",
    # the close grace of a sitting open at the window's close
    "本次测评已截止。你在截止前已开始作答，请在 %(t)s 前提交。":
        "This screening has closed. You started before it closed: please send your answers by %(t)s.",
}


if __name__ == "__main__":
    from mh_platform.web.translations.en_cases import apply

    here = pathlib.Path(__file__).resolve().parent
    print(apply(here / "en" / "LC_MESSAGES" / "messages.po", EN), "strings filled")
