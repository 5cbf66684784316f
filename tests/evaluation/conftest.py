import json
from pathlib import Path

import pytest

TOPICS = {
    "volcano": "Volcanoes erupt molten basalt and ash when magma pressure builds under the crust.",
    "glacier": "Glaciers carve U-shaped valleys as compacted ice slowly flows downhill.",
    "coral": "Coral reefs bleach when warm water makes polyps expel their symbiotic algae.",
    "tornado": "Tornadoes form when rotating supercell thunderstorms stretch a vortex to the ground.",
    "aurora": "Auroras glow when solar wind particles excite oxygen and nitrogen high in the atmosphere.",
    "monsoon": "Monsoons reverse seasonal winds and bring heavy summer rain to South Asia.",
    "tsunami": "Tsunamis are long ocean waves launched by undersea earthquakes displacing water.",
    "geyser": "Geysers periodically spout superheated groundwater through narrow vents.",
}
QUESTIONS = {
    "volcano": "what makes magma erupt from a volcano",
    "glacier": "how do glaciers shape valleys",
    "coral": "why do coral reefs bleach",
    "tornado": "how does a tornado form",
    "aurora": "what causes the aurora",
    "monsoon": "what is a monsoon",
    "tsunami": "what launches a tsunami",
    "geyser": "why do geysers spout water",
}


@pytest.fixture(scope="session")
def tiny_beir(tmp_path_factory) -> Path:
    """A BEIR-format folder: 8 topical documents plus 4 distractors, one relevant document per query."""
    folder = tmp_path_factory.mktemp("tiny-beir")
    (folder / "qrels").mkdir()
    corpus = [{"_id": f"d-{name}", "title": name.title(), "text": text} for name, text in TOPICS.items()]
    corpus += [
        {"_id": f"x{i}", "title": "", "text": f"Unrelated note number {i} about spreadsheets and\x96invoices."}
        for i in range(4)
    ]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(row) for row in corpus) + "\n")
    queries = [{"_id": f"q-{name}", "text": text} for name, text in QUESTIONS.items()]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(row) for row in queries) + "\n")
    names = list(TOPICS)
    for split, chosen in {"train": names[:5], "test": names[5:]}.items():
        rows = ["query-id\tcorpus-id\tscore"] + [f"q-{name}\td-{name}\t1" for name in chosen]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return folder
