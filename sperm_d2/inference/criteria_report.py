"""The report's WHO strict-criteria table (a part segmenter ran): per sample, % normal by
criteria with its 95 % Wilson interval against WHO's 4 %, defects per region and the
teratozoospermia index (defects per abnormal sperm, WHO 2021 §3.6)."""

from __future__ import annotations

CRITERIA_HEADERS = [
    "sample",
    "assessable",
    "normal",
    "% normal",
    "95 % CI",
    "WHO (>= 4 %)",
    "not assessable",
    "head defects",
    "midpiece defects",
    "tail defects",
    "TZI",
]


def criteria_rows(named: list[tuple[str, dict]], interval, mark) -> list[list]:
    """One row per ``(name, totals)`` of a sample or video that has criteria grades (none
    without parts); ``interval(k, n)`` and ``mark(pct, ci)`` are the report's Wilson interval
    (in %) and WHO mark, so both tables judge % alike."""
    rows = []
    for name, t in named:
        who = t.get("who")
        if not who:
            continue
        normal, abnormal = int(who.get("normal", 0)), int(who.get("abnormal", 0))
        n = normal + abnormal
        pct = 100.0 * normal / n if n else None
        ci = interval(normal, n)
        tzi = who.get("defects", 0) / abnormal if abnormal else None
        rows.append(
            [
                name,
                n,
                normal,
                "-" if pct is None else f"{pct:.1f}",
                "-" if ci is None else f"{ci[0]:.1f}-{ci[1]:.1f}",
                mark(pct, ci),
                int(who.get("not assessable", 0)),
                int(who.get("head_defects", 0)),
                int(who.get("midpiece_defects", 0)),
                int(who.get("tail_defects", 0)),
                "-" if tzi is None else f"{tzi:.2f}",
            ]
        )
    return rows


def no_scale_note(unscaled: int, judged: int) -> str | None:
    """The report's note on heads judged by the criteria without a pixel size (their head length
    and width unchecked, their grade by the other criteria), so that % normal is not read as
    size-checked; ``None`` when every head judged had one."""
    if not unscaled:
        return None
    return (
        f"Head size not checked: no pixel size given (--um-per-px or SPERM.UM_PER_PX), so the "
        f"WHO head length and width limits were not applied to {unscaled} of {judged} heads "
        "judged by the criteria; their % normal is by shape, parts, midpiece and tail only "
        "(who_not_assessed: head_size_no_scale)."
    )
