"""A generated collection of legal acts, one folder per act and one file per article.

Every act has the same layout: its folder and its files are named by the act's official
number and article numbers only; its first article gives its full name and abbreviation
("This Regulation may be cited as the Coastal Flood Resilience Act (CFRA)"); the article that
answers "when does it apply?" never names it ("This Regulation shall apply from ..."). Only a
retriever that knows what each document is can tell the acts' application articles apart.

Acts are written in English, French and German, each language in its own phrasing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# (subject in the act's language, language): invented subjects, none in any shipped corpus.
SUBJECTS: tuple[tuple[str, str], ...] = (
    ("Coastal Flood Resilience", "en"),
    ("Rail Freight Interoperability", "en"),
    ("Pharmaceutical Cold Chain Integrity", "en"),
    ("Orbital Debris Mitigation", "en"),
    ("Geothermal Drilling Safety", "en"),
    ("Inland Waterway Pilotage", "en"),
    ("Seed Bank Preservation", "en"),
    ("Avalanche Warning Coordination", "en"),
    ("sécurité des ascenseurs urbains", "fr"),
    ("protection des zones humides côtières", "fr"),
    ("Lawinenwarndienst", "de"),
    ("Trinkwasserspeicher", "de"),
)
MONTHS = ("January", "March", "May", "July", "September", "November")


@dataclass(frozen=True)
class Act:
    number: str
    subject: str
    language: str
    abbreviation: str
    full_name: str
    applies_from: str
    application_file: Path

    def questions(self) -> list[str]:
        """Two questions naming the act by its subject and by its abbreviation only."""
        if self.language == "fr":
            return [
                f"À partir de quelle date le règlement sur la {self.subject} s'applique-t-il ?",
                f"Quand le {self.abbreviation} entre-t-il en application ?",
            ]
        if self.language == "de":
            return [
                f"Ab wann gilt die {self.subject}-Verordnung?",
                f"Ab welchem Datum gilt die {self.abbreviation}?",
            ]
        return [
            f"When does the {self.subject.lower()} regulation apply?",
            f"From which date does {self.abbreviation} apply?",
        ]


def _abbreviation(full_name: str) -> str:
    small = {"des", "de", "la", "du", "sur"}
    return "".join(word[0].upper() for word in full_name.replace("-", " ").split()
                   if word not in small)  # fmt: skip


def write_acts(root: Path) -> list[Act]:
    """Writes the acts under root (one folder each) and returns them."""
    acts = []
    for index, (subject, language) in enumerate(SUBJECTS):
        number = f"3{2031 + index % 4}R{(417 + 97 * index) % 1000:04d}"
        folder = root / "acts" / number
        folder.mkdir(parents=True)
        applies_from = f"{3 + index} {MONTHS[index % len(MONTHS)]} {2032 + index % 5}"
        official = f"Regulation (EU) {2031 + index % 4}/{417 + 97 * index}"
        if language == "fr":
            full_name = f"Règlement sur la {subject}"
            abbreviation = _abbreviation(full_name)
            texts = _french(official, full_name, abbreviation, applies_from)
        elif language == "de":
            full_name = f"{subject}verordnung"
            abbreviation = f"{subject[:3].upper()}V"
            texts = _german(official, full_name, abbreviation, applies_from)
        else:
            full_name = f"{subject} Act"
            abbreviation = _abbreviation(full_name)
            texts = _english(official, full_name, abbreviation, applies_from, index)
        for name, text in texts.items():
            (folder / name).write_text(text, encoding="utf-8")
        acts.append(Act(number, subject, language, abbreviation, full_name, applies_from,
                        folder / "article-09.md"))  # fmt: skip
    return acts


def _english(
    official: str, full_name: str, abbreviation: str, applies_from: str, index: int
) -> dict[str, str]:
    return {
        "article-01.md": (
            f"# {official} - Article 1\n\n## Subject matter\n\n"
            f"This Regulation lays down uniform rules for the sector it governs. "
            f"This Regulation may be cited as the {full_name} ({abbreviation}).\n"
        ),
        "article-02.md": (
            f"# {official} - Article 2\n\n## Definitions\n\n"
            "For the purposes of this Regulation, 'competent authority' means the authority "
            "designated by each Member State. 'Operator' means any natural or legal person "
            "carrying out an activity covered by this Regulation.\n"
        ),
        "article-05.md": (
            f"# {official} - Article 5\n\n## Penalties\n\n"
            "Member States shall lay down the rules on penalties applicable to infringements "
            f"of this Regulation. Fines shall not exceed {2 + index} % of annual turnover.\n"
        ),
        "article-09.md": (
            f"# {official} - Article 9\n\n## Entry into force and application\n\n"
            "This Regulation shall enter into force on the twentieth day following that of "
            f"its publication. It shall apply from {applies_from}.\n"
        ),
    }


def _french(official: str, full_name: str, abbreviation: str, applies_from: str) -> dict[str, str]:
    official = official.replace("Regulation (EU)", "Règlement (UE)")
    return {
        "article-01.md": (
            f"# {official} - Article premier\n\n## Objet\n\n"
            "Le présent règlement établit des règles uniformes pour le secteur qu'il régit. "
            f"Il peut être cité comme le {full_name} ({abbreviation}).\n"
        ),
        "article-02.md": (
            f"# {official} - Article 2\n\n## Définitions\n\n"
            "Aux fins du présent règlement, on entend par « autorité compétente » l'autorité "
            "désignée par chaque État membre.\n"
        ),
        "article-09.md": (
            f"# {official} - Article 9\n\n## Entrée en vigueur et application\n\n"
            "Le présent règlement entre en vigueur le vingtième jour suivant celui de sa "
            f"publication. Il est applicable à partir du {applies_from}.\n"
        ),
    }


def _german(official: str, full_name: str, abbreviation: str, applies_from: str) -> dict[str, str]:
    official = official.replace("Regulation (EU)", "Verordnung (EU)")
    return {
        "article-01.md": (
            f"# {official} - Artikel 1\n\n## Gegenstand\n\n"
            "Diese Verordnung legt einheitliche Vorschriften für den von ihr geregelten "
            f"Bereich fest. Sie kann als {full_name} ({abbreviation}) zitiert werden.\n"
        ),
        "article-02.md": (
            f"# {official} - Artikel 2\n\n## Begriffsbestimmungen\n\n"
            "Im Sinne dieser Verordnung bezeichnet der Ausdruck „zuständige Behörde“ die von "
            "jedem Mitgliedstaat benannte Behörde.\n"
        ),
        "article-09.md": (
            f"# {official} - Artikel 9\n\n## Inkrafttreten und Geltung\n\n"
            "Diese Verordnung tritt am zwanzigsten Tag nach ihrer Veröffentlichung in Kraft. "
            f"Sie gilt ab dem {applies_from}.\n"
        ),
    }
