"""A share of near-duplicate register records, each holding its own codes.

Every record reads like the others (the same register wording, the same kinds of fields) and
differs only in its reference code, case number, product code, amount and date: the share
on which an exact code must beat a crowd of passages that say almost the same thing.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

ACTIONS = ("amended", "opened", "reviewed", "renewed", "transferred", "closed")
OFFICES = ("records office", "contracts desk", "claims unit", "registry", "legal office")
PRODUCTS = ("pump housing", "valve assembly", "filter cartridge", "control board", "sensor kit")
PREFIXES = ("AMEND", "REF", "CTR", "ORD", "INV")


@dataclass(frozen=True)
class Record:
    number: int
    reference: str  # AMEND-4711
    case: str  # 2023/0457
    product: str  # PX-221-B
    amount: str  # 12,480.00
    text: str

    @property
    def file_name(self) -> str:
        return f"entry-{self.number:03d}.txt"


def make_records(count: int = 120, seed: int = 15) -> list[Record]:
    """`count` records whose codes are all different, the same for the same seed."""
    rng = random.Random(seed)
    records: list[Record] = []
    seen: set[str] = set()
    while len(records) < count:
        number = len(records) + 1
        reference = f"{rng.choice(PREFIXES)}-{rng.randrange(1000, 9999)}"
        case = f"{rng.randrange(2019, 2026)}/{rng.randrange(1, 9999):04d}"
        letters = rng.choice("PQXZ") + rng.choice("KMRX")
        product = f"{letters}-{rng.randrange(100, 999)}-{rng.choice('ABC')}"
        if {reference, case, product} & seen:
            continue
        seen |= {reference, case, product}
        amount = f"{rng.randrange(1, 99)},{rng.randrange(0, 999):03d}.{rng.randrange(0, 99):02d}"
        day = f"{rng.randrange(2019, 2026)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        text = (
            f"Register entry {number}. Record {rng.choice(ACTIONS)} on {day} by the "
            f"{rng.choice(OFFICES)}. New reference {reference} assigned to case {case} for "
            f"the {rng.choice(PRODUCTS)}, product code {product}; amount EUR {amount} "
            "recorded. The record was checked and filed with the register."
        )
        records.append(Record(number, reference, case, product, amount, text))
    return records


def with_the_reported_code(records: list[Record]) -> list[Record]:
    """The records with the code of the reported failure, AMEND-4711, in one of them, and its
    number under another prefix in another amended record (a decoy that BM25 alone, which
    splits a code at its hyphen, cannot tell apart)."""
    holder, decoy = records[41], records[86]
    return [
        _recoded(record, "AMEND-4711")
        if record is holder
        else _recoded(record, "REF-4711", action="amended")
        if record is decoy
        else record
        for record in records
    ]


def _recoded(record: Record, reference: str, action: str | None = None) -> Record:
    text = record.text.replace(record.reference, reference)
    if action:
        text = re.sub(r"Record \w+ on", f"Record {action} on", text)
    return Record(record.number, reference, record.case, record.product, record.amount, text)


def write_share(folder: Path, records: list[Record]) -> Path:
    """The records as text files under `folder/register`."""
    register = folder / "register"
    register.mkdir(parents=True, exist_ok=True)
    for record in records:
        (register / record.file_name).write_text(record.text + "\n", encoding="utf-8")
    return register


def questions(records: list[Record], count: int = 8, seed: int = 4711) -> list[tuple[str, Record]]:
    """Questions naming one record's code inside an ordinary sentence, with the record that
    holds it: the reference, the case number or the product code, in turn."""
    rng = random.Random(seed)
    picked = rng.sample(records, count)
    asked: list[tuple[str, Record]] = []
    for index, record in enumerate(picked):
        kind = index % 3
        if kind == 0:
            asked.append((f"record amended new reference {record.reference}", record))
        elif kind == 1:
            asked.append((f"what was recorded for case {record.case} in the register?", record))
        else:
            asked.append((f"which entry mentions the product code {record.product}", record))
    return asked
