"""The enforcement bureau's vocabulary (城管执法办案系统) ↔ ours.

Field names are pinyin initials of the Chinese terms; enum values are the Chinese words the
departments' systems use. ``ywlx`` (业务类型) names the kind.
"""

from __future__ import annotations

from typing import Final

from adapters._framework.vocabulary import (
    BUS_KINDS,
    DOCUMENT_REF_FIELDS,
    ID_TYPES,
    SUBJECT_FIELDS,
    KindVocabulary,
    Nested,
)
from adapters.enforcement.criminal import (
    CRIMINAL_KINDS,
    CRIMINAL_RECEIVES,
    CRIMINAL_SENDS,
    ChainVocabulary,
)

__all__ = ["OPINION_TYPES", "RECEIVES", "SENDS", "VOCABULARY"]

SENDS: Final = ["opinion.request", "penalty.feedback", "clue.receipt", *CRIMINAL_SENDS]
"""What the bureau submits (the criminal-transfer chain: :mod:`adapters.enforcement.criminal`)."""
RECEIVES: Final = ["clue.handover", "opinion.response", "opinion.delegated", *CRIMINAL_RECEIVES]
"""What the bureau is sent (besides the bus's own receipts and SLA events)."""

OPINION_TYPES: Final = {
    "专业意见": "PROFESSIONAL_OPINION",
    "提供资料": "MATERIALS",
    "检测": "INSPECTION_TESTING",
    "鉴定": "APPRAISAL",
    "认定": "CERTIFICATION",
}
"""意见类型."""

_PENALTY_TYPES: Final = {
    "警告": "WARNING",
    "罚款": "FINE",
    "没收违法所得": "CONFISCATION_OF_ILLEGAL_GAINS",
    "没收非法财物": "CONFISCATION_OF_ILLEGAL_PROPERTY",
    "责令停产停业": "SUSPENSION_OF_BUSINESS",
    "暂扣或吊销许可证照": "PERMIT_SUSPENSION_OR_REVOCATION",
    "行政拘留": "DETENTION",
    "限期拆除": "ORDER_TO_DEMOLISH",
    "其他": "OTHER",
}
_MEASURES: Final = {
    "查封": "SEAL_UP",
    "扣押": "SEIZE",
    "冻结": "FREEZE_DEPOSITS",
    "限制人身自由": "RESTRICT_PERSONAL_FREEDOM",
    "其他": "OTHER",
}
_EXECUTION: Final = {
    "未执行": "NOT_EXECUTED",
    "执行中": "EXECUTING",
    "执行完毕": "EXECUTED",
    "已申请法院强制执行": "COURT_ENFORCEMENT_APPLIED",
    "中止执行": "SUSPENDED",
    "终结执行": "TERMINATED",
}

VOCABULARY: Final = ChainVocabulary(
    [
        KindVocabulary(
            "clue.handover",
            "线索移交",
            {
                "xsbh": "clue_no",  # 线索编号
                "wflx": "violation_type",  # 违法类型
                "wfss": "description",  # 违法事实
                "fxdd": "location",  # 发现地点
                "fxsj": "discovered_at",  # 发现时间
                "flyj": "legal_basis",  # 法律依据
                "dsr": Nested("parties", SUBJECT_FIELDS),  # 当事人
                "jgjl": Nested("supervision_records", DOCUMENT_REF_FIELDS),  # 监管记录
            },
            {"id_type": ID_TYPES},
        ),
        KindVocabulary(
            "opinion.response",
            "意见答复",
            {
                "qqbh": "request_no",  # 请求编号
                "dfbh": "response_no",  # 答复编号
                "dfnr": "answer",  # 答复内容
                "jl": "conclusions",  # 结论
                "wj": Nested("documents", DOCUMENT_REF_FIELDS),  # 文件
                "dfsj": "answered_at",  # 答复时间
                "qfr": "signed_by",  # 签发人
            },
        ),
        KindVocabulary(
            "opinion.delegated",
            "委托机构办理",
            {
                "qqbh": "request_no",
                "jgmc": "institution_name",  # 受托机构名称
                "jgxydm": "institution_credit_code",  # 受托机构统一社会信用代码
                "zzzsbh": "qualification_certificate_no",  # 资质证书编号
                "wtfw": "scope",  # 委托范围
                "wtsj": "delegated_at",  # 委托时间
                "yjwcsj": "expected_at",  # 预计完成时间
            },
        ),
        KindVocabulary(
            "opinion.request",
            "意见征询",
            {
                "qqbh": "request_no",
                "yjlx": "opinion_type",  # 意见类型
                "sx": "subject",  # 征询事项
                "bj": "background",  # 背景情况
                "wt": "questions",  # 问题
                "cl": Nested("materials", DOCUMENT_REF_FIELDS),  # 材料
                "ckbz": "reference_standards",  # 参考标准
                "dfqx": "due_at",  # 答复期限
                "lxr": "contact_name",  # 联系人
                "lxdh": "contact_phone",  # 联系电话
            },
            {"opinion_type": OPINION_TYPES},
        ),
        KindVocabulary(
            "penalty.feedback",
            "处罚情况反馈",
            {
                "bgbh": "report_no",  # 报告编号
                "qsrq": "period_start",  # 起始日期
                "jzrq": "period_end",  # 截止日期
                "cfjd": Nested(  # 处罚决定
                    "decisions",
                    {
                        "ajbh": "case_id",  # 案件编号
                        "jdsh": "decision_no",  # 决定书号
                        "jdrq": "decided_on",  # 决定日期
                        "dsr": Nested("party", SUBJECT_FIELDS),  # 当事人
                        "wfxw": "violation",  # 违法行为
                        "flyj": "legal_basis",  # 法律依据
                        "cflx": "penalty_type",  # 处罚种类
                        "fmje": "amount_fen",  # 罚没金额（分）
                        "qzcs": "compulsory_measures",  # 强制措施
                        "zxzt": "execution_status",  # 执行状态
                        "sxfz": "suspected_crime",  # 涉嫌犯罪
                    },
                ),
            },
            {
                "id_type": ID_TYPES,
                "penalty_type": _PENALTY_TYPES,
                "compulsory_measures": _MEASURES,
                "execution_status": _EXECUTION,
            },
        ),
        KindVocabulary(
            "clue.receipt",
            "线索签收",
            {
                "xsbh": "clue_no",
                "clyj": "decision",  # 处理意见
                "qssj": "decided_at",  # 签收时间
                "jsly": "reason",  # 拒收理由
                "lajbh": "enforcement_case_id",  # 立案案件编号
            },
            {"decision": {"接收": "ACCEPTED", "拒收": "REJECTED"}},
        ),
        *CRIMINAL_KINDS,
        *BUS_KINDS,
    ]
)
"""Every kind the bureau sends or receives, in its terms."""
