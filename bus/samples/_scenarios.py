"""The violations the samples are about: what happens around Yangzonghai lake and which law applies.

Data, not code: one :class:`Scenario` per kind of violation, with the regulators that supervise
it, the law the enforcement bureau cites, the penalty it gives and — where the facts can reach a
crime — the offence a transfer to the police names. Texts are templates over ``{party}``,
``{place}``, ``{q}`` (the scenario's measured quantity), ``{value}`` and ``{amount}`` (yuan).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bus.models import (
    CompulsoryMeasure,
    EvidenceItemType,
    OpinionType,
    PenaltyType,
    Subject,
)
from bus.samples import _people
from bus.samples._context import Ctx

__all__ = ["SCENARIOS", "Incident", "Scenario", "incident", "scenario_for"]

_E = EvidenceItemType
_P = PenaltyType
_M = CompulsoryMeasure


@dataclass(frozen=True, slots=True)
class Scenario:
    """One kind of violation and everything the samples write about it."""

    code: str
    violation: str
    regulators: tuple[str, ...]
    trades: tuple[str, ...]  # empty: the parties are private persons
    places: tuple[str, ...]
    quantity: tuple[float, float, int]  # smallest, largest, decimals
    unit_value_yuan: int  # value of one unit of quantity (sand), 0 where there is none
    facts: str
    legal_basis: tuple[str, ...]
    penalty_basis: str
    penalties: tuple[tuple[PenaltyType, int, int], ...]  # type, smallest and largest yuan
    measures: tuple[CompulsoryMeasure, ...]
    obligation: str  # what an ORDER_TO_DEMOLISH obliges the party to do; "" if never given
    records: tuple[str, ...]  # the regulator's supervision records handed over with a clue
    opinion_type: OpinionType
    opinion_subject: str
    questions: tuple[str, ...]
    standards: tuple[str, ...]
    answer: str
    conclusions: tuple[str, ...]
    institution_trade: str
    offence: str | None = None
    criminal_articles: tuple[str, ...] = ()
    crime_facts: str = ""
    appraisal_title: str = ""
    evidence: tuple[tuple[EvidenceItemType, str, int, str, str | None], ...] = ()


SCENARIOS: dict[str, Scenario] = {
    s.code: s
    for s in (
        Scenario(
            code="illegal_construction",
            violation="违法建设",
            regulators=("ygh.regulator.planning", "ygh.regulator.construction"),
            trades=("房地产开发", "旅游开发", "建材"),
            places=(
                "汤池街道渔村阳宗海湖滨带",
                "阳宗镇小马房村环湖东路临湖一侧",
                "七甸街道摆夷坝村阳宗海一级保护区内",
            ),
            quantity=(80, 650, 0),
            unit_value_yuan=0,
            facts="{party}未取得建设工程规划许可证，在{place}擅自建设砖混结构房屋，建筑面积约"
            "{q}平方米，该建筑位于阳宗海一级保护区范围内。",
            legal_basis=(
                "《中华人民共和国城乡规划法》第四十条",
                "《中华人民共和国城乡规划法》第六十四条",
            ),
            penalty_basis="《中华人民共和国城乡规划法》第六十四条",
            penalties=((_P.ORDER_TO_DEMOLISH, 0, 0), (_P.FINE, 30_000, 260_000)),
            measures=(_M.SEAL_UP,),
            obligation="自行拆除位于{place}的违法建筑物并恢复原状",
            records=("现场检查笔录", "现场照片", "责令停止违法行为通知书"),
            opinion_type=OpinionType.CERTIFICATION,
            opinion_subject="关于{place}建筑物规划许可情况的认定",
            questions=(
                "该建筑物是否取得建设工程规划许可证？",
                "该建筑物是否位于阳宗海风景名胜区一级保护区范围内？",
                "该违法建设能否采取改正措施消除对规划实施的影响？",
            ),
            standards=("《阳宗海风景名胜区总体规划》",),
            answer="经核查，{place}建筑物未取得建设工程规划许可证，位于阳宗海风景名胜区一级保护区"
            "范围内，属于无法采取改正措施消除对规划实施影响的情形。",
            conclusions=("未取得建设工程规划许可证", "无法采取改正措施消除影响，应当限期拆除"),
            institution_trade="测绘有限公司",
        ),
        Scenario(
            code="illegal_sand_mining",
            violation="非法采砂",
            regulators=("ygh.regulator.water", "ygh.regulator.land"),
            trades=("砂石", "建材", "土石方工程"),
            places=("阳宗海东岸汤池渠入湖口", "七甸河下游河道管理范围内", "阳宗镇大梨园村湖湾浅滩"),
            quantity=(2200, 6800, 0),
            unit_value_yuan=78,
            facts="{party}未取得河道采砂许可证和采矿许可证，在{place}使用挖掘机、自卸货车非法采挖"
            "河砂，经测量采挖砂石约{q}立方米。",
            legal_basis=(
                "《中华人民共和国水法》第三十九条",
                "《中华人民共和国河道管理条例》第二十五条",
                "《中华人民共和国河道管理条例》第四十四条",
            ),
            penalty_basis="《中华人民共和国河道管理条例》第四十四条",
            penalties=(
                (_P.FINE, 20_000, 100_000),
                (_P.CONFISCATION_OF_ILLEGAL_GAINS, 30_000, 300_000),
            ),
            measures=(_M.SEIZE,),
            obligation="",
            records=("现场检查笔录", "现场照片", "采砂现场测量记录"),
            opinion_type=OpinionType.APPRAISAL,
            opinion_subject="关于{place}非法采挖砂石数量及价值的鉴定",
            questions=(
                "采挖区域是否位于河道管理范围或禁采区内？",
                "非法采挖砂石的体积是多少立方米？",
                "非法采挖砂石的市场价值是多少？",
            ),
            standards=(
                "《中华人民共和国河道管理条例》",
                "《土方与爆破工程施工及验收规范》（GB 50201-2012）",
            ),
            answer="经现场测量，采挖区域位于河道管理范围内的禁采区，采挖砂石体积约{q}立方米，按当地"
            "砂石市场价格核定价值约人民币{value}元。",
            conclusions=("采挖区域位于禁采区", "采挖砂石约{q}立方米，价值约人民币{value}元"),
            institution_trade="资产评估有限公司",
            offence="非法采矿罪",
            criminal_articles=("《中华人民共和国刑法》第三百四十三条第一款",),
            crime_facts="经查，{party}未取得采矿许可证，在{place}非法采挖河砂约{q}立方米，经鉴定非法"
            "开采的矿产品价值人民币{value}元，已达到《最高人民法院、最高人民检察院关于办理非法采矿、"
            "破坏性采矿刑事案件适用法律若干问题的解释》规定的“情节严重”标准，涉嫌非法采矿罪。",
            appraisal_title="非法采挖砂石价值鉴定意见书",
            evidence=(
                (_E.SEIZED_ITEM, "挖掘机", 2, "台", None),
                (_E.SEIZED_ITEM, "自卸货车", 3, "辆", None),
                (_E.SAMPLE, "砂石样品", 3, "份", None),
                (_E.DOCUMENT, "现场勘验笔录及测量报告", 1, "份", ".pdf"),
                (_E.ELECTRONIC_DATA, "无人机航拍视频", 1, "段", ".mp4"),
            ),
        ),
        Scenario(
            code="sewage_discharge",
            violation="违法排污",
            regulators=("ygh.regulator.environment", "ygh.regulator.water", "ygh.regulator.park"),
            trades=("化工", "磷化工", "温泉度假酒店", "食品加工"),
            places=(
                "阳宗海西岸某度假区污水处理站排放口",
                "汤池街道温泉村雨水管网入湖口",
                "工业园区七甸片区雨水排放口",
            ),
            quantity=(1.6, 9.8, 2),
            unit_value_yuan=0,
            facts="{party}通过暗管将未经处理的含砷生产废水经{place}排入阳宗海，经现场采样监测，"
            "排放口废水总砷浓度为{q}mg/L，超过《污水综合排放标准》（GB 8978-1996）规定的排放限值。",
            legal_basis=(
                "《中华人民共和国水污染防治法》第三十九条",
                "《中华人民共和国水污染防治法》第八十三条",
            ),
            penalty_basis="《中华人民共和国水污染防治法》第八十三条",
            penalties=((_P.FINE, 100_000, 1_000_000), (_P.SUSPENSION_OF_BUSINESS, 0, 0)),
            measures=(_M.SEAL_UP, _M.SEIZE),
            obligation="",
            records=("现场检查笔录", "采样记录", "现场照片"),
            opinion_type=OpinionType.INSPECTION_TESTING,
            opinion_subject="关于{place}外排废水的采样检测",
            questions=(
                "排放口废水中总砷、化学需氧量、总磷浓度是否超过国家排放标准？",
                "超标倍数是多少？",
                "外排废水是否进入阳宗海水体？",
            ),
            standards=(
                "《污水综合排放标准》（GB 8978-1996）",
                "《地表水环境质量标准》（GB 3838-2002）",
            ),
            answer="经采样检测，{place}外排废水总砷浓度为{q}mg/L，超过《污水综合排放标准》"
            "（GB 8978-1996）第一类污染物最高允许排放浓度（0.5mg/L），外排废水经管网直接进入"
            "阳宗海。",
            conclusions=("总砷浓度{q}mg/L，超过排放标准", "外排废水直接进入阳宗海水体"),
            institution_trade="环境检测技术有限公司",
            offence="污染环境罪",
            criminal_articles=("《中华人民共和国刑法》第三百三十八条",),
            crime_facts="经查，{party}通过暗管向阳宗海排放含砷生产废水，经检测排放口废水总砷浓度为"
            "{q}mg/L，超过国家污染物排放标准三倍以上，依照《最高人民法院、最高人民检察院关于办理"
            "环境污染刑事案件适用法律若干问题的解释》，属于“严重污染环境”情形，涉嫌污染环境罪。",
            appraisal_title="水质检测报告",
            evidence=(
                (_E.SEIZED_ITEM, "排污暗管（PVC，管径110毫米）", 24, "米", None),
                (_E.SAMPLE, "废水样品", 6, "瓶", None),
                (_E.DOCUMENT, "采样记录及检测报告", 1, "份", ".pdf"),
                (_E.ELECTRONIC_DATA, "排放口视频监控录像", 1, "段", ".mp4"),
            ),
        ),
        Scenario(
            code="unlicensed_food_stall",
            violation="无证经营食品摊点",
            regulators=("ygh.regulator.fooddrug", "ygh.regulator.market"),
            trades=(),
            places=("汤池街道温泉广场", "阳宗海旅游度假区沙滩入口", "七甸街道农贸市场外侧道路"),
            quantity=(8, 60, 0),
            unit_value_yuan=0,
            facts="{party}未取得食品经营许可证，在{place}占道设摊经营烧烤、米线等食品，现场查见待售"
            "食材约{q}公斤。",
            legal_basis=(
                "《中华人民共和国食品安全法》第三十五条",
                "《无证无照经营查处办法》第十三条",
            ),
            penalty_basis="《无证无照经营查处办法》第十三条",
            penalties=((_P.FINE, 500, 10_000), (_P.WARNING, 0, 0)),
            measures=(_M.SEIZE,),
            obligation="",
            records=("现场检查笔录", "现场照片"),
            opinion_type=OpinionType.MATERIALS,
            opinion_subject="关于{party}食品经营许可及登记情况的资料",
            questions=(
                "当事人是否取得食品经营许可证或办理食品摊贩登记？",
                "当事人此前是否因同类违法行为受过行政处罚？",
            ),
            standards=(),
            answer="经查询，{party}未取得食品经营许可证，亦未办理食品摊贩登记，此前未因同类违法行为"
            "受过行政处罚。",
            conclusions=("未取得食品经营许可证", "未办理食品摊贩登记"),
            institution_trade="检测技术有限公司",
        ),
        Scenario(
            code="illegal_land_occupation",
            violation="非法占地",
            regulators=("ygh.regulator.land",),
            trades=("农业开发", "物流", "建材"),
            places=(
                "阳宗镇北山村永久基本农田",
                "七甸街道宝洪寺村集体耕地",
                "汤池街道老鹰地村承包耕地",
            ),
            quantity=(6, 25, 1),
            unit_value_yuan=0,
            facts="{party}未经批准，擅自占用{place}约{q}亩，硬化地面并搭建钢架棚用于堆放建材，"
            "致使耕地种植条件严重毁坏。",
            legal_basis=(
                "《中华人民共和国土地管理法》第四十四条",
                "《中华人民共和国土地管理法》第七十七条",
            ),
            penalty_basis="《中华人民共和国土地管理法》第七十七条",
            penalties=((_P.ORDER_TO_DEMOLISH, 0, 0), (_P.FINE, 40_000, 330_000)),
            measures=(),
            obligation="拆除在{place}非法占用土地上新建的建筑物和其他设施，恢复土地原状",
            records=("现场检查笔录", "土地利用现状图", "现场照片"),
            opinion_type=OpinionType.CERTIFICATION,
            opinion_subject="关于{place}被占用地块地类及面积的认定",
            questions=(
                "被占用土地的地类是什么，是否属于永久基本农田？",
                "被占用土地面积是多少亩？",
                "耕地种植条件是否被严重毁坏？",
            ),
            standards=("《土地利用现状分类》（GB/T 21010-2017）",),
            answer="经核查，{place}被占用地块面积约{q}亩，地类为耕地，其中部分属于永久基本农田，耕地"
            "种植条件已被严重毁坏。",
            conclusions=("被占用土地约{q}亩，地类为耕地", "耕地种植条件已被严重毁坏"),
            institution_trade="测绘有限公司",
            offence="非法占用农用地罪",
            criminal_articles=("《中华人民共和国刑法》第三百四十二条",),
            crime_facts="经查，{party}未经批准擅自占用{place}约{q}亩改作他用，经国土部门认定，"
            "被占用耕地种植条件已被严重毁坏，数量较大，涉嫌非法占用农用地罪。",
            appraisal_title="土地勘测定界报告及地类认定意见",
            evidence=(
                (_E.DOCUMENT, "土地勘测定界报告", 1, "份", ".pdf"),
                (_E.ELECTRONIC_DATA, "卫星遥感影像比对图", 2, "张", ".jpg"),
                (_E.SEIZED_ITEM, "钢架棚构件", 1, "批", None),
            ),
        ),
        Scenario(
            code="illegal_dumping",
            violation="乱倒建筑垃圾",
            regulators=("ygh.regulator.construction",),
            trades=("土石方工程", "运输", "建筑劳务"),
            places=(
                "阳宗海环湖路K12段路侧",
                "七甸街道宝洪寺村沟渠旁",
                "汤池街道阳宗海大道南侧空地",
            ),
            quantity=(30, 400, 0),
            unit_value_yuan=0,
            facts="{party}未经核准，将建筑垃圾约{q}吨随意倾倒在{place}，影响市容环境并堵塞排洪沟渠。",
            legal_basis=("《城市建筑垃圾管理规定》第二十六条",),
            penalty_basis="《城市建筑垃圾管理规定》第二十六条",
            penalties=((_P.FINE, 5_000, 50_000),),
            measures=(_M.SEIZE,),
            obligation="",
            records=("现场检查笔录", "现场照片"),
            opinion_type=OpinionType.MATERIALS,
            opinion_subject="关于{party}建筑垃圾处置核准情况的资料",
            questions=(
                "当事人是否办理建筑垃圾处置核准手续？",
                "涉事运输车辆是否取得建筑垃圾运输许可？",
            ),
            standards=(),
            answer="经查询，{party}未办理建筑垃圾处置核准手续，涉事运输车辆未取得建筑垃圾运输许可。",
            conclusions=("未办理建筑垃圾处置核准手续",),
            institution_trade="测绘有限公司",
        ),
    )
}
"""Scenario code → :class:`Scenario`; the codes are what the ``scenario`` override accepts."""

CRIMINAL_SCENARIOS = tuple(code for code, s in SCENARIOS.items() if s.offence)


@dataclass(frozen=True, slots=True)
class Incident:
    """One violation as found: the scenario, the parties, where, and the measured quantity."""

    scenario: Scenario
    parties: tuple[Subject, ...]  # the company first, then its legal representative; or a person
    place: str
    q: float

    @property
    def party(self) -> Subject:
        """The main party (the company, or the person)."""
        return self.parties[0]

    @property
    def value_yuan(self) -> int:
        """The value involved, in yuan (0 where the scenario has none)."""
        return round(self.q * self.scenario.unit_value_yuan)

    def text(self, template: str, **extra: Any) -> str:
        """``template`` filled in with this incident's facts."""
        decimals = self.scenario.quantity[2]
        q = f"{self.q:.{decimals}f}"
        return template.format(
            party=self.party.name, place=self.place, q=q, value=f"{self.value_yuan:,}", **extra
        )


def scenario_for(ctx: Ctx, *, regulator: str | None = None, criminal: bool = False) -> Scenario:
    """The ``scenario`` override, else one fitting ``regulator`` (and a crime, if asked)."""
    code = ctx.overrides.get("scenario")
    if code is not None:
        if code not in SCENARIOS:
            raise ValueError(f"unknown scenario {code!r}; known: {', '.join(SCENARIOS)}")
        if criminal and not SCENARIOS[code].offence:
            crimes = ", ".join(CRIMINAL_SCENARIOS)
            raise ValueError(f"scenario {code!r} names no offence; pick one of {crimes}")
        return SCENARIOS[code]
    choices = [s for s in SCENARIOS.values() if not criminal or s.offence]
    fitting = [s for s in choices if regulator in s.regulators]
    return ctx.pick(fitting or choices)


def incident(ctx: Ctx, scenario: Scenario) -> Incident:
    """A fresh violation of ``scenario``."""
    low, high, decimals = scenario.quantity
    q = round(ctx.rng.uniform(low, high), decimals)
    if scenario.trades:
        parties: tuple[Subject, ...] = (
            _people.company(ctx.rng, scenario.trades),
            _people.person(ctx.rng),
        )
    else:
        parties = (_people.person(ctx.rng),)
    return Incident(scenario, parties, ctx.pick(scenario.places), q)
