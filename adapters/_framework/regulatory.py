"""The regulatory exchange's vocabulary: clues, opinions and penalty feedback (行政执法协作).

The enforcement bureau and the regulators exchange clues (线索移交), opinion requests and
answers (意见征询/答复/委托机构办理) and penalty feedback (处罚情况反馈) under the same ``ywlx``
codes, field names and enum values on both sides. So each such kind is defined once, here, and not
in both adapters; it lives in the framework because adapters may not import each other but all may
import ``adapters._framework`` (as :mod:`adapters._framework.chain` does for the criminal chain).

``clue.receipt`` (线索签收) is shared too, except that the bureau's system and the regulators'
name its decision and case-number fields differently: :func:`clue_receipt` builds the kind from
each adapter's two names, so the rest of it is still defined once.
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

__all__ = ["OPINION_TYPES", "REGULATORY_KINDS", "clue_receipt"]

OPINION_TYPES: Final = {
    "专业意见": "PROFESSIONAL_OPINION",
    "提供资料": "MATERIALS",
    "检测": "INSPECTION_TESTING",
    "鉴定": "APPRAISAL",
    "认定": "CERTIFICATION",
}
"""意见类型."""
_RECEIPT_DECISIONS: Final = {"接收": "ACCEPTED", "拒收": "REJECTED"}  # 签收结果 / 处理意见
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

_KINDS: Final[tuple[KindVocabulary, ...]] = (
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
)

REGULATORY_KINDS: Final[Mapping[str, KindVocabulary]] = {k.kind: k for k in _KINDS}
"""Every shared kind of the regulatory exchange, by our kind name (``clue.receipt`` excepted)."""


def clue_receipt(*, decision: str, case_id: str) -> KindVocabulary:
    """``clue.receipt`` with a department's own names for its decision and its case number."""
    return KindVocabulary(
        "clue.receipt",
        "线索签收",
        {
            "xsbh": "clue_no",  # 线索编号
            decision: "decision",
            "qssj": "decided_at",  # 签收时间
            "jsly": "reason",  # 拒收理由
            case_id: "enforcement_case_id",
        },
        {"decision": _RECEIPT_DECISIONS},
    )
