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


@pytest.fixture(scope="session")
def tiny_locomo(tmp_path_factory) -> Path:
    """Two LoCoMo-shaped conversations, one per file, in both shapes the release uses (turns at the top
    level, or under ``conversation``). Conversation 22 talks about the same marathon and puppy as 11,
    so a search that leaked across namespaces would find its turns."""
    folder = tmp_path_factory.mktemp("tiny-locomo") / "conversations"
    folder.mkdir()
    first = {
        "speaker_a": "Ann",
        "speaker_b": "Ben",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [
            {"speaker": "Ann", "dia_id": "D1:1", "text": "I adopted a puppy named Biscuit last weekend."},
            {
                "speaker": "Ben",
                "dia_id": "D1:2",
                "text": "Congrats! I started pottery classes on Tuesdays.",
                "blip_caption": "a photo of a clay bowl on a wheel",
                "img_url": ["https://example.invalid/bowl.jpg"],
            },
            {"speaker": "Ann", "dia_id": "D1:3", "text": "My sister is visiting from Lisbon next week."},
        ],
        "session_2_date_time": "7:00 pm on 1 June, 2023",
        "session_2": [
            {"speaker": "Ben", "dia_id": "D2:1", "text": "I finished my first marathon in Boston yesterday."},
            {"speaker": "Ann", "dia_id": "D2:2", "text": "Wow!  Biscuit   learned to sit, by the way. "},
        ],
        "session_3_date_time": "9:00 am on 3 July, 2023",  # a date with no session, as in the release
        "qa": [
            {"question": "What is the name of Ann's puppy?", "answer": "Biscuit", "evidence": ["D1:1"], "category": 4},
            {"question": "Where did Ben run a marathon?", "answer": "Boston", "evidence": ["D2:1"], "category": 1},
            {"question": "What did Ben make in pottery?", "answer": "a bowl", "evidence": ["D:1:2"], "category": 4},
            {"question": "Where is Ann's sister from?", "answer": "Lisbon", "evidence": ["D1:3; D9:9"], "category": 2},
            {
                "question": "What did Ann's puppy chew?",
                "adversarial_answer": "a shoe",
                "evidence": ["D1:1", "D2:2"],
                "category": 5,
            },
        ],
    }
    second = {
        "sample_id": "conv-22",
        "conversation": {
            "speaker_a": "Cid",
            "speaker_b": "Dee",
            "session_1_date_time": "10:00 am on 2 March, 2022",
            "session_1": [
                {"speaker": "Cid", "dia_id": "D1:1", "text": "I ran the Boston marathon too, my first marathon."},
                {
                    "speaker": "Dee",
                    "dia_id": "D1:2",
                    "text": "My puppy Biscuit chews everything.",
                    "blip_caption": "a photo of a dog chewing a shoe",
                },
            ],
        },
        "qa": [
            {"question": "Which marathon did Cid run?", "answer": "Boston", "evidence": ["D1:1"], "category": 1},
            {"question": "What does Dee's puppy chew?", "answer": "everything", "evidence": ["D1:2"], "category": 4},
        ],
    }
    (folder / "11.json").write_text(json.dumps(first))
    (folder / "22.json").write_text(json.dumps(second))
    return folder
