"""The month's scores as the office reads them: a table, CSV, an xlsx workbook (for its 通报), JSON lines.

Pure: everything is built in memory (the workbook as bytes); `sunlight score` writes it out.
Column titles are Chinese; every part shows its points and, beside them, what they were
computed from (依据), so that a person can check each number.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from alerts.describe import display_width, table_lines
from alerts.scoring import SUBJECT_TITLE, MonthScores, SubjectScore, as_day_ends, number_text, basis

UNRANKED_TITLE = "当月无办件、不参与排名的{subject}（单独列出）"


def headers(scores: MonthScores) -> list[str]:
    subject = SUBJECT_TITLE[scores.attachment]
    out = ["名次", f"{subject}编码", f"{subject}名称", "办件数"]
    for _, title, points in scores.part_titles:
        out += [f"{title}（{number_text(points)}分）", f"{title}依据"]
    return out + ["总分", "说明"]


def row(subject: SubjectScore) -> list[Any]:
    cells: list[Any] = [subject.rank if subject.rank is not None else "不排名", subject.code, subject.name,
                        subject.cases]
    notes = []
    for part in subject.parts:
        cells += [part.points, basis(part)]
        if part.note:
            notes.append(f"{part.title}{part.note}")
    return cells + [subject.total, "；".join(notes)]


def title(scores: MonthScores) -> str:
    """The title, with what a 通报 must not leave out: a month not over is scored as it stood (暂计),
    and one scored without the month's inputs counts none of them (found by a black-box test: said only
    on standard error, in English, the title of a workbook pasted into a 通报 read as final)."""
    year, month = scores.month.split("-")
    marks = scoring_marks(scores)
    return f"{year}年{int(month)}月 {scores.title} 得分" + (f"（{'；'.join(marks)}）" if marks else "")


def scoring_marks(scores: MonthScores) -> list[str]:
    """What the scores are not, in words (`title`): final (暂计), or with the month's inputs."""
    marks = []
    if scores.provisional_as_of is not None:
        marks.append(f"暂计，截至 {scores.provisional_as_of:%Y-%m-%d %H:%M}" + (
            "" if scores.pushes_due_by is None else
            f"，自建系统部门推送本月数据的期限 {as_day_ends(scores.pushes_due_by, '%Y-%m-%d')} 未到"))
    if not scores.inputs_given:
        # 部门覆盖率 (the rules' term) where the rulebook scores it: a region's (附件1), not a department's
        coverage = any(key == "coverage" for key, _, _ in scores.part_titles)
        marks.append("未提供考核输入：抽查、未落实变更、投诉及暗访扣分按 0 计" + ("，部门覆盖率未提供" if coverage else ""))
    return marks


# The CSV's last column: a file has no title, so every row says what the title would (`scoring_marks`).
STATUS_HEADER = "计分状态"
FINAL = "月度已结束，考核输入已提供"


def jsonl_records(scores: MonthScores) -> list[dict[str, Any]]:
    """Each subject's record, with what the title says of the whole month (`title`): scored as it
    stood before its end (`provisional_as_of`), or without the month's inputs (`inputs_given`)."""
    marks = {"provisional_as_of": scores.provisional_as_of.isoformat() if scores.provisional_as_of else None,
             "inputs_given": scores.inputs_given,
             "pushes_due_by": scores.pushes_due_by.isoformat() if scores.pushes_due_by else None}
    return [{**s.as_json(scores.month), **marks} for s in scores.all]


def csv_text(scores: MonthScores) -> str:
    """The table as CSV, each row ending with what the title says of the whole month
    (`STATUS_HEADER`): a CSV has no title, and one of a month not over read as final (found by a
    black-box test)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*headers(scores), STATUS_HEADER])
    status = "；".join(scoring_marks(scores)) or FINAL
    for subject in scores.all:
        writer.writerow([*(_cell(c) for c in row(subject)), status])
    return out.getvalue()


def _cell(value: Any) -> str:
    return number_text(value) if isinstance(value, float) else str(value)


def table_text(scores: MonthScores) -> str:
    head = headers(scores)
    ranked = [[_cell(c) for c in row(s)] for s in scores.ranked]
    unranked = [[_cell(c) for c in row(s)] for s in scores.unranked]
    head_line, *body = table_lines(head, ranked + unranked)  # one set of column widths for both parts
    lines = [title(scores), head_line]
    lines += body[:len(ranked)] or ["（当月没有办件，无排名）"]
    if unranked:
        lines += ["", UNRANKED_TITLE.format(subject=SUBJECT_TITLE[scores.attachment]), *body[len(ranked):]]
    return "\n".join(lines) + "\n"


def xlsx_bytes(scores: MonthScores) -> bytes:
    """A workbook with one sheet: a title row, Chinese headers, the ranking, then the unranked."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    sheet = book.active
    sheet.title = f"{scores.month} {SUBJECT_TITLE[scores.attachment]}"
    head = headers(scores)
    sheet.append([title(scores)])
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(head))
    sheet.cell(1, 1).font = Font(bold=True, size=14)
    sheet.cell(1, 1).alignment = Alignment(horizontal="center")
    sheet.append(head)
    for cell in sheet[2]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(horizontal="center", wrap_text=True)
    for subject in scores.ranked:
        sheet.append(row(subject))
    if scores.unranked:
        sheet.append([])
        sheet.append([UNRANKED_TITLE.format(subject=SUBJECT_TITLE[scores.attachment])])
        sheet.cell(sheet.max_row, 1).font = Font(bold=True)
        for subject in scores.unranked:
            sheet.append(row(subject))
    for cells in sheet.iter_rows():
        for cell in cells:
            if cell.data_type == "f":  # text that begins with "=" (a name, a reason): text, never a formula
                cell.data_type = "s"
    for index, text in enumerate(head, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = max(8, min(30, display_width(text) + 2))
    sheet.freeze_panes = "A3"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
