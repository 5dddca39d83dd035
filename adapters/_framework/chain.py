"""The criminal-transfer chain's vocabulary (两法衔接), and the court's for execution applications.

These terms are national: the enforcement bureau, the police, the procuratorate and the court all
exchange the chain's documents under the same ``ywlx`` codes, field names and enum values. So each
kind is defined once, here, and not in every adapter that sends or receives it. It lives in the
framework because adapters may not import each other but all may import ``adapters._framework``.
Each adapter takes the kinds it handles from :data:`CHAIN_KINDS`. If a department's system ever
departs from the shared terms for some kind, that adapter defines its own
:class:`~adapters._framework.vocabulary.KindVocabulary` for that kind locally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from adapters._framework.vocabulary import (
    DOCUMENT_REF_FIELDS,
    ID_TYPES,
    SUBJECT_FIELDS,
    KindVocabulary,
    Nested,
)

__all__ = ["CHAIN_KINDS", "DOCUMENT_TYPES"]

DOCUMENT_TYPES: Final = {
    "移送书": "TRANSFER_LETTER",
    "调查报告": "INVESTIGATION_REPORT",
    "涉案物品清单": "SEIZED_ITEMS_LIST",
    "检验报告或鉴定结论": "INSPECTION_OR_APPRAISAL_REPORT",
    "其他": "OTHER",
}
"""文书类型 (Decree 310 art. 6)."""
_ROLES: Final = {
    "犯罪嫌疑人": "SUSPECT",
    "涉嫌犯罪单位": "SUSPECT_ORGANISATION",
    "直接负责的主管人员": "RESPONSIBLE_PERSON",
    "法定代表人": "LEGAL_REPRESENTATIVE",
    "被害人": "VICTIM",
    "证人": "WITNESS",
    "其他": "OTHER",
}
_FILING: Final = {"立案": "FILED", "不予立案": "NOT_FILED"}
_RECONSIDERATION: Final = {"维持不予立案": "MAINTAIN_REFUSAL", "立案": "FILE_CASE"}
_ITEM_TYPES: Final = {
    "涉案物品": "SEIZED_ITEM",
    "书证材料": "DOCUMENT",
    "电子数据": "ELECTRONIC_DATA",
    "样品": "SAMPLE",
    "其他": "OTHER",
}
_CASE_STATUS: Final = {
    "侦查中": "INVESTIGATING",
    "撤销案件": "CASE_WITHDRAWN",
    "移交行政处罚": "RETURNED_FOR_ADMINISTRATIVE_PENALTY",
    "移送审查起诉": "TRANSFERRED_FOR_PROSECUTION",
    "提起公诉": "PROSECUTED",
    "不起诉": "NOT_PROSECUTED",
    "已判决": "JUDGMENT_RENDERED",
    "结案": "CLOSED",
    "其他": "OTHER",
}
_NOTICE_TYPES: Final = {"要求说明不立案理由": "EXPLAIN_REFUSAL", "通知立案": "FILE_CASE"}
_OBSTRUCTIONS: Final = {
    "拒不接受移送": "REFUSED_TO_ACCEPT",
    "不出具回执": "NO_RECEIPT",
    "逾期不作立案决定": "NO_DECISION_IN_TIME",
    "不退回案卷材料": "MATERIALS_NOT_RETURNED",
    "干预移送": "INTERFERENCE",
    "其他": "OTHER",
}
_ACCEPTANCE: Final = {"受理": "ACCEPTED", "不予受理": "NOT_ACCEPTED"}
_RULINGS: Final = {"准予执行": "EXECUTE", "不予执行": "NOT_EXECUTE"}

_KINDS: Final[tuple[KindVocabulary, ...]] = (
    KindVocabulary(
        "criminal.transfer",
        "涉嫌犯罪案件移送",
        {
            "ysshh": "transfer_letter_no",  # 移送书号
            "xzajbh": "case_id",  # 行政案件编号
            "ajmc": "case_name",  # 案件名称
            "sxzm": "suspected_offence",  # 涉嫌罪名
            "xftw": "criminal_law_articles",  # 刑法条文
            "dsr": Nested(  # 当事人
                "parties",
                {
                    "xm": "name",
                    "js": "role",  # 角色
                    "zjlx": "id_type",
                    "zjhm": "id_number",
                    "dz": "address",
                },
            ),
            "ajss": "facts_summary",  # 案件事实
            "saje": "amount_involved_fen",  # 涉案金额（分）
            "spxx": Nested(  # 审批信息
                "approval",
                {"spr": "approver", "zw": "approver_position", "spsj": "approved_at"},
            ),
            "yscl": Nested(  # 移送材料
                "documents",
                {
                    "wslx": "document_type",  # 文书类型
                    "bt": "title",
                    "fjmc": "attachment_name",
                    "fjhash": "attachment_sha256",
                },
            ),
            "lxr": "contact_name",  # 联系人
            "lxdh": "contact_phone",  # 联系电话
        },
        {"role": _ROLES, "id_type": ID_TYPES, "document_type": DOCUMENT_TYPES},
    ),
    KindVocabulary(
        "criminal.receipt",
        "移送回执",
        {
            "ysshh": "transfer_letter_no",
            "jssj": "received_at",  # 接收时间
            "jsr": "receiver",  # 接收人（部门）
            "qzr": "signed_by",  # 签字人
            "hzbh": "receipt_no",  # 回执编号
            "bz": "note",  # 备注
        },
    ),
    KindVocabulary(
        "criminal.jurisdiction_forward",
        "移送管辖",
        {
            "ysshh": "transfer_letter_no",
            "gxdw": "competent_agency_id",  # 有管辖权的单位
            "gxdwmc": "competent_agency_name",  # 其名称
            "ly": "reason",  # 理由
            "zssj": "forwarded_at",  # 转送时间
            "tzsh": "notice_no",  # 告知书号
        },
    ),
    KindVocabulary(
        "criminal.filing_decision",
        "立案决定",
        {
            "ysshh": "transfer_letter_no",
            "jd": "decision",  # 决定
            "jdsh": "decision_no",  # 决定书号
            "jdsj": "decided_at",  # 决定时间
            "xsajbh": "criminal_case_no",  # 刑事案件编号
            "ly": "reasons",  # 不予立案理由
            "thcl": Nested(  # 退回材料
                "returned_materials", {"mc": "title", "sl": "quantity", "bz": "note"}
            ),
        },
        {"decision": _FILING},
    ),
    KindVocabulary(
        "criminal.reconsideration_request",
        "提请复议",
        {
            "ysshh": "transfer_letter_no",
            "fysqh": "request_no",  # 复议申请号
            "byljdsh": "refusal_decision_no",  # 不予立案决定书号
            "fyly": "grounds",  # 复议理由
            "tqsj": "requested_at",  # 提请时间
        },
    ),
    KindVocabulary(
        "criminal.reconsideration_decision",
        "复议决定",
        {
            "ysshh": "transfer_letter_no",
            "fysqh": "request_no",
            "jd": "decision",
            "jdsh": "decision_no",
            "jdsj": "decided_at",
            "ly": "reasons",
            "xsajbh": "criminal_case_no",
        },
        {"decision": _RECONSIDERATION},
    ),
    KindVocabulary(
        "criminal.evidence_handover",
        "移交涉案物品",
        {
            "ysshh": "transfer_letter_no",
            "xsajbh": "criminal_case_no",
            "wp": Nested(  # 物品
                "items",
                {
                    "lx": "item_type",  # 类型
                    "ms": "description",  # 描述
                    "sl": "quantity",  # 数量
                    "dw": "unit",  # 单位
                    "fjmc": "attachment_name",
                    "fjhash": "attachment_sha256",
                },
            ),
            "yjsj": "handed_over_at",  # 移交时间
            "yjr": "handed_over_by",  # 移交人
            "jsr": "received_by",  # 接收人
        },
        {"item_type": _ITEM_TYPES},
    ),
    KindVocabulary(
        "criminal.case_update",
        "案件进展",
        {
            "ysshh": "transfer_letter_no",
            "xsajbh": "criminal_case_no",
            "zt": "status",  # 状态
            "gxsj": "updated_at",  # 更新时间
            "bz": "note",
        },
        {"status": _CASE_STATUS},
    ),
    KindVocabulary(
        "supervision.request",
        "提请立案监督",
        {
            "jdsqh": "request_no",  # 监督申请号
            "ysshh": "transfer_letter_no",
            "byljdsh": "refused_decision_no",
            "byljdxx": "refused_decision_message_id",  # 不予立案决定的消息编号
            "gajg": "police_agency_id",  # 公安机关
            "ly": "reason",
            "tqsj": "requested_at",
        },
    ),
    KindVocabulary(
        "supervision.notice",
        "立案监督通知",
        {
            "tzsh": "notice_no",  # 通知书号
            "tzlx": "notice_type",  # 通知类型
            "ysshh": "transfer_letter_no",
            "gajg": "police_agency_id",
            "nr": "content",  # 内容
            "qfsj": "issued_at",  # 签发时间
            "xq": "due_at",  # 限期
        },
        {"notice_type": _NOTICE_TYPES},
    ),
    KindVocabulary(
        "obstruction.report",
        "移送受阻报告",
        {
            "bgbh": "report_no",  # 报告编号
            "ysshh": "transfer_letter_no",
            "szlx": "obstruction_type",  # 受阻类型
            "zadw": "obstructing_agency_id",  # 阻碍单位
            "qkms": "description",  # 情况描述
            "szsj": "occurred_at",  # 受阻时间
            "bgsj": "reported_at",  # 报告时间
            "zj": Nested("evidence", DOCUMENT_REF_FIELDS),  # 证据
        },
        {"obstruction_type": _OBSTRUCTIONS},
    ),
    KindVocabulary(
        "court.execution_application",
        "强制执行申请",
        {
            "sqh": "application_no",  # 申请号
            "jdsh": "decision_no",  # 行政决定书号
            "jdrq": "decided_on",  # 决定日期
            "bzxr": Nested("party", SUBJECT_FIELDS),  # 被执行人
            "yw": "obligation",  # 应履行的义务
            "lxqx": "compliance_deadline",  # 履行期限
            "cgsdrq": "reminder_served_on",  # 催告书送达日期
            "je": "amount_fen",  # 金额（分）
            "cl": Nested("documents", DOCUMENT_REF_FIELDS),  # 材料
            "sqsj": "applied_at",  # 申请时间
        },
        {"id_type": ID_TYPES},
    ),
    KindVocabulary(
        "court.acceptance",
        "受理决定",
        {
            "sqh": "application_no",
            "jd": "decision",
            "jdsj": "decided_at",
            "fyah": "court_case_no",  # 法院案号
            "ly": "reasons",
            "xtz": "hearing_required",  # 需听证（听取被执行人意见）
        },
        {"decision": _ACCEPTANCE},
    ),
    KindVocabulary(
        "court.ruling",
        "执行裁定",
        {
            "sqh": "application_no",
            "fyah": "court_case_no",
            "cdsh": "ruling_no",  # 裁定书号
            "cd": "ruling",  # 裁定
            "cdsj": "ruled_at",  # 裁定时间
            "ly": "reasons",
        },
        {"ruling": _RULINGS},
    ),
)

CHAIN_KINDS: Final[Mapping[str, KindVocabulary]] = {k.kind: k for k in _KINDS}
"""Every kind of the criminal-transfer chain and of court applications, by our kind name."""
