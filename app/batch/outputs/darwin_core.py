"""``dwca.zip``: a Darwin Core Archive of the taxa a collection's observations were identified
as, ready for GBIF's IPT or any DwC-A reader: ``occurrence.txt`` (tab-separated UTF-8, one
header row), ``meta.xml`` (the core's row type and every column's term) and ``eml.xml`` (a
minimal EML 2.1.1 description).

Which observations become occurrences:

- one row per observation whose answer names a taxon: its best species (no match, results
  listed), or, when no species reached the minimum score (``low_confidence``, ``filtered_out``)
  but the species under one higher taxon together reach the rollup threshold, that taxon, at its
  rank (``taxonRank`` genus, family, ...): the photos do show a member of it;
- no row for an observation that names no taxon (``not_an_organism``, ``out_of_scope``, a
  ``low_confidence`` without a rollup) or that failed: an occurrence says *which* organism was
  where and when, and GBIF does not publish one without a scientific name. ``predictions.csv``
  and ``answers.jsonl`` keep every observation.

``occurrenceID`` is the observation's id (what the source names it: a photo's path, a CSV's
observation, a Camtrap DP media or event), so a rerun over the same source writes the same ids.
``eventDate``: a Camtrap DP event's start/end, else the photo's timestamp, else the place's date
(the source's, or the photos' EXIF): the most precise one known. The coordinates are the place
the answer used (the request's, the row's, the deployment's or the photo's GPS).

What an answer names (the taxon, the place, the classifier) is read by ``answer_reading``, as
the Camtrap DP writer reads it. Only the standard library: the service's image carries no
Darwin Core dependency.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import uuid
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from app.batch.collection import Outcome
from app.batch.outputs.answer_reading import (
    HIGHER_RANKS,
    SOFTWARE,
    NamedTaxon,
    classified_by,
    event_date,
    named_taxon,
    plain_number,
    where,
)

DWC = "http://rs.tdwg.org/dwc/terms/"
DWC_TEXT = "http://rs.tdwg.org/dwc/text/"
EML = "eml://ecoinformatics.org/eml-2.1.1"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XML_NS = "http://www.w3.org/XML/1998/namespace"
# GBIF's EML profile: what the IPT itself writes, and what GBIF checks an archive's eml.xml with.
EML_LOCATION = "eml://ecoinformatics.org/eml-2.1.1 http://rs.gbif.org/schema/eml-gbif-profile/1.1/eml.xsd"


OCCURRENCE_TERMS = [
    "occurrenceID", "basisOfRecord", "occurrenceStatus", "eventDate", "scientificName", "taxonRank",
    "kingdom", "phylum", "class", "order", "family", "genus", "taxonID", "vernacularName",
    "identifiedBy", "dateIdentified", "identificationRemarks", "decimalLatitude", "decimalLongitude",
    "geodeticDatum", "georeferenceSources", "associatedMedia",
]  # fmt: skip


# --- the archive -----------------------------------------------------------------------------


def occurrences(outcomes: Sequence[Outcome], models: Mapping[str, str]) -> list[dict[str, str]]:
    """The occurrence rows, in the outcomes' order, by term name."""
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for outcome in outcomes:
        taxon = named_taxon(outcome.answer)
        if taxon is None:
            continue
        observation, place = outcome.observation, where(outcome)
        occurrence_id = observation.id
        # Sources give unique ids; a journal merged by hand might not, and GBIF refuses duplicates.
        n = 1
        while occurrence_id in seen:
            n += 1
            occurrence_id = f"{observation.id}#{n}"
        seen.add(occurrence_id)
        by = classified_by(taxon.model, models)
        row = {
            "occurrenceID": occurrence_id,
            "basisOfRecord": "MachineObservation",
            "occurrenceStatus": "present",
            "eventDate": event_date(observation, place) or "",
            "scientificName": taxon.scientific_name,
            "taxonRank": taxon.rank or "",
            **{rank: taxon.higher.get(rank, "") for rank in HIGHER_RANKS},
            "taxonID": taxon.taxon_id or "",
            "vernacularName": taxon.vernacular or "",
            "identifiedBy": by,
            "dateIdentified": outcome.answered_at,
            "identificationRemarks": _remarks(taxon, by, outcome.answer or {}),
            "decimalLatitude": plain_number(place.lat) if place.lat is not None else "",
            "decimalLongitude": plain_number(place.lon) if place.lon is not None else "",
            "geodeticDatum": "WGS84" if place.located else "",
            "georeferenceSources": _GEOREFERENCE.get(place.source or "", "") if place.located else "",
            "associatedMedia": " | ".join(photo.given for photo in observation.photos),
        }
        rows.append(row)
    return rows


_GEOREFERENCE = {
    "photo": "the photo's EXIF GPS",
    "row": "the collection's CSV",
    "deployment": "the Camtrap DP deployment",
    "request": "given with the request",
}


def _remarks(taxon: NamedTaxon, by: str, answer: Mapping[str, Any]) -> str:
    if not taxon.rollup:
        return f"probability {plain_number(taxon.probability)} from {by} (calibrated)"
    reason = answer.get("no_match_reason")
    return (
        f"no species reached the minimum score ({reason}); the species of this {taxon.rank or 'taxon'} "
        f"hold probability {plain_number(taxon.probability)} together, from {by} (calibrated)"
    )


def write_dwca(
    outcomes: Sequence[Outcome], out: Path, *, models: Mapping[str, str], created: str, title: str
) -> Path:
    """Write the archive to ``out`` (a zip) whole: built under a temporary name beside it and
    renamed, so a crash leaves the previous archive or none, never half of one."""
    rows = occurrences(outcomes, models)
    skipped = len(outcomes) - len(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(handle)
    partial = Path(name)
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("occurrence.txt", _table(rows))
            archive.writestr("meta.xml", _meta())
            archive.writestr("eml.xml", _eml(title, created, models, len(rows), skipped))
        with partial.open("rb") as fh:
            os.fsync(fh.fileno())
        partial.chmod(0o644)  # mkstemp's 0600 would hide the archive from others who read DIR
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out


def _table(rows: list[dict[str, str]]) -> str:
    # No quoting (meta.xml says fieldsEnclosedBy=""): readers differ on quotes, so a tab or a
    # line break inside a value becomes a space instead.
    def clean(value: str) -> str:
        return value.replace("\t", " ").replace("\r", " ").replace("\n", " ")

    lines = ["\t".join(OCCURRENCE_TERMS)]
    lines += ["\t".join(clean(row[term]) for term in OCCURRENCE_TERMS) for row in rows]
    return "\n".join(lines) + "\n"


def _meta() -> bytes:
    ET.register_namespace("", DWC_TEXT)
    archive = ET.Element(f"{{{DWC_TEXT}}}archive", {"metadata": "eml.xml"})
    core = ET.SubElement(
        archive,
        f"{{{DWC_TEXT}}}core",
        {
            "encoding": "UTF-8",
            "fieldsTerminatedBy": "\\t",
            "linesTerminatedBy": "\\n",
            "fieldsEnclosedBy": "",
            "ignoreHeaderLines": "1",
            "rowType": f"{DWC}Occurrence",
        },
    )
    files = ET.SubElement(core, f"{{{DWC_TEXT}}}files")
    ET.SubElement(files, f"{{{DWC_TEXT}}}location").text = "occurrence.txt"
    ET.SubElement(core, f"{{{DWC_TEXT}}}id", {"index": str(OCCURRENCE_TERMS.index("occurrenceID"))})
    for index, term in enumerate(OCCURRENCE_TERMS):
        ET.SubElement(core, f"{{{DWC_TEXT}}}field", {"index": str(index), "term": f"{DWC}{term}"})
    return _xml(archive)


def _eml(title: str, created: str, models: Mapping[str, str], count: int, skipped: int) -> bytes:
    ET.register_namespace("eml", EML)
    ET.register_namespace("xsi", XSI)
    # The same title and time give the same packageId: a rerun describes the same dataset.
    package_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{SOFTWARE}:dwca:{title}:{created}"))
    root = ET.Element(
        f"{{{EML}}}eml",
        {
            f"{{{XSI}}}schemaLocation": EML_LOCATION,
            "packageId": package_id,
            "system": "uuid",  # the packageId is a UUID (v5 of the title and time)
            "scope": "system",
            f"{{{XML_NS}}}lang": "eng",
        },
    )
    dataset = ET.SubElement(root, "dataset")
    ET.SubElement(dataset, "title", {f"{{{XML_NS}}}lang": "eng"}).text = title
    creator = ET.SubElement(dataset, "creator")
    ET.SubElement(creator, "organizationName").text = SOFTWARE
    ET.SubElement(dataset, "pubDate").text = _date(created)
    ET.SubElement(dataset, "language").text = "eng"
    abstract = ET.SubElement(dataset, "abstract")
    ET.SubElement(abstract, "para").text = (
        f"{count} occurrences identified by machine from photos, by {classified_by(None, models)}. "
        f"{skipped} observations named no taxon (no organism, none the models cover, no species or "
        "higher taxon sure enough) or failed, and are not included. Probabilities are calibrated; "
        "the identifications are not reviewed by a person."
    )
    contact = ET.SubElement(dataset, "contact")  # EML requires one; no person is known here
    ET.SubElement(contact, "organizationName").text = SOFTWARE
    return _xml(root)


def _date(created: str) -> str:
    try:
        return dt.datetime.fromisoformat(created).date().isoformat()
    except ValueError:
        return created[:10]


def _xml(root: ET.Element) -> bytes:
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"
