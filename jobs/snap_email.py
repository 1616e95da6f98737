"""Convert SNAP's email-Eu-core-temporal (`SRC DST SECONDS` lines, plus the derived department
table) into relgraph's public ingest format, the way a user would bring their own data:

    python -m jobs.snap_email ../shared/data/email-Eu-core-temporal.txt.gz \\
        ../shared/data/email-eu-core-temporal-departments.tsv OUT_DIR

People get synthetic addresses (`u<ID>@eu-core.example`), departments become employers (so
shared employers exist; the 21 people whose department is ambiguous get none), the anonymized
origin becomes 2020-01-01 and everything is one tenant's data (`eucore`), since one institution's
mail server saw it all."""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from pathlib import Path

ORIGIN = 1577836800  # 2020-01-01T00:00:00Z, an arbitrary origin for the anonymized seconds
TENANT = "eucore"


def convert(emails: Path, departments: Path, out: Path) -> dict[str, int]:
    department: dict[str, str] = {}
    with open(departments, encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            # Ambiguous matches list candidates ("9|24"): such a person gets no employer rather than a guess.
            if row["status"] == "unique":
                department[row["temporal_id"]] = row["department"]

    def address(person: str) -> str:
        return f"u{person}@eu-core.example"

    out.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if emails.suffix == ".gz" else open
    lines = []
    with opener(emails, "rt", encoding="utf-8") as f:
        for line in f:
            sender, recipient, offset = line.split()
            if sender != recipient:
                lines.append((int(offset), sender, recipient))
    lines.sort()  # the file is three time-sorted runs
    people = sorted({p for _, s, d in lines for p in (s, d)}, key=int)
    with open(out / "employment.jsonl", "w", encoding="utf-8") as f:
        for person in people:
            if person in department:
                f.write(
                    json.dumps(
                        {
                            "kind": "employment",
                            "tenant": TENANT,
                            "email": address(person),
                            "company": f"d{department[person]}.eu-core.example",
                            "from": ORIGIN,
                        }
                    )
                    + "\n"
                )
    with open(out / "interactions.jsonl", "w", encoding="utf-8") as f:
        for seconds, src, dst in lines:
            f.write(
                json.dumps(
                    {
                        "kind": "interaction",
                        "tenant": TENANT,
                        "type": "email",
                        "ts": ORIGIN + seconds,
                        "from": address(src),
                        "to": [address(dst)],
                    }
                )
                + "\n"
            )
    return {"people": len(people), "emails": len(lines), "with_department": sum(p in department for p in people)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("emails", type=Path)
    parser.add_argument("departments", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print(json.dumps(convert(args.emails, args.departments, args.out)))


if __name__ == "__main__":
    main()
