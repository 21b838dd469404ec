"""Draw the replay set's customer messages and split its labels into halves, reproducibly (fixed seeds).

    python bench/replay/draw.py sample [--datasets DIR]        # the random draw, in order, for labelling
    python bench/replay/draw.py topup KIND [--datasets DIR]    # a kind's top-up candidates, in their fixed order
    python bench/replay/draw.py halves                         # (re)assign the halves in labels.tsv

`sample` and `topup` print `file<TAB>line<TAB>column<TAB>text` to stdout for the person labelling; the texts are
never written into the repository (labels.tsv holds references only). See bench/replay/README.md.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parents[2] / "shared" / "datasets"
LABELS = HERE / "labels.tsv"
SOURCES = {"pairs/bq/dev.tsv": 300, "pairs/atec/train.tsv": 100}  # messages drawn at random from each file
DRAW_SEED = 20261130
TOPUP_SEED = 20261131
HALF_SEED = 20261132
OTHER_INSTITUTIONS = re.compile(r"微粒|微众|花呗|借呗|蚂蚁|支付宝|余额宝|网商|芝麻|淘宝|天猫")
# top-up filters: messages of a kind the random draw holds too few of; their candidates are labelled in order,
# whatever label each turns out to need, until the kind reaches its minimum
TOPUP_FILTERS = {
    "answer": re.compile(r"提前还|结清|还款日|还款卡|银行卡|手机号|验证码|密码|转账|利息|利率|信用卡|征信|卡号|网点"),
    "handoff": re.compile(r"投诉|人工|为什么我的|扣了|多扣|没到账|被拒|不给我|一直|打电话|来电"),
    "clarify": re.compile(r"^.{2,6}$"),
}
COLUMNS = ("file", "line", "column", "label", "half")


@dataclass(frozen=True)
class Message:
    file: str
    line: int
    column: str  # a = text_a, b = text_b
    text: str


def messages(datasets: Path, file: str) -> list[Message]:
    """Each distinct text of a pair file once, at its first occurrence (line = 1-based line in the file)."""
    seen: dict[str, Message] = {}
    with (datasets / file).open(encoding="utf-8-sig") as handle:
        for number, raw in enumerate(handle, start=1):
            fields = raw.rstrip("\r\n").split("\t")
            if number == 1 or len(fields) != 3:
                continue
            for column, text in zip("ab", fields[:2], strict=True):
                text = text.replace("\ufeff", "").strip()
                if text and text not in seen:
                    seen[text] = Message(file, number, column, text)
    return list(seen.values())


def sample(datasets: Path) -> list[Message]:
    """The random draw: SOURCES[file] distinct messages of each file, in the order they were drawn."""
    rng = random.Random(DRAW_SEED)
    drawn: list[Message] = []
    taken: set[str] = set()
    for file, count in SOURCES.items():
        pool = [m for m in messages(datasets, file) if m.text not in taken]
        picked = rng.sample(pool, count)
        taken.update(m.text for m in picked)
        drawn += picked
    return drawn


def topup(datasets: Path, kind: str) -> list[Message]:
    """Candidates for topping up `kind`: BQ messages matching the kind's filter that name no other institution
    and were not drawn, in a fixed random order."""
    drawn = {m.text for m in sample(datasets)}
    pool = [m for m in messages(datasets, "pairs/bq/dev.tsv")
            if m.text not in drawn and TOPUP_FILTERS[kind].search(m.text) and not OTHER_INSTITUTIONS.search(m.text)]
    random.Random(f"{TOPUP_SEED}:{kind}").shuffle(pool)
    return pool


def assign_halves(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Half of each outcome kind (answer, clarify, out_of_scope, handoff) to `tune`, the rest to `report`,
    at random with a fixed seed, independent of the rows' order in the file."""
    by_kind: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r["file"], int(r["line"]), r["column"])):
        by_kind[row["label"].split(":", 1)[0]].append(row)
    rng = random.Random(HALF_SEED)
    for kind in sorted(by_kind):
        group = by_kind[kind]
        rng.shuffle(group)
        for i, row in enumerate(group):
            row["half"] = "tune" if i < (len(group) + 1) // 2 else "report"
    return rows


def _read_labels(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _write_labels(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, delimiter="\t", lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("sample", "topup", "halves"))
    parser.add_argument("kind", nargs="?", choices=sorted(TOPUP_FILTERS))
    parser.add_argument("--datasets", type=Path, default=DATASETS)
    args = parser.parse_args()
    if args.command == "halves":
        _write_labels(LABELS, assign_halves(_read_labels(LABELS)))
        return
    if args.command == "topup" and not args.kind:
        parser.error("topup needs a KIND")
    drawn = sample(args.datasets) if args.command == "sample" else topup(args.datasets, args.kind)
    for m in drawn:
        sys.stdout.write(f"{m.file}\t{m.line}\t{m.column}\t{m.text}\n")


if __name__ == "__main__":
    main()
