"""seft.preference: the data shapes people have, from JSONL, Parquet and save_to_disk, into ranked
records; a bad row is an error naming the file, the row and the field."""

import json

import datasets
import pytest

from seft.errors import SeftError
from seft.preference import read_preference, read_prompts

USER = [{"role": "user", "content": "Sort 3 1 2"}]
ROWS = {
    "ranked": {"id": "a", "prompt": USER, "responses": [
        {"rank": 3, "content": "worst"}, {"rank": 1, "content": "best"}, {"rank": 2, "content": "middle"}]},
    "scored": {"prompt": "Sort 3 1 2", "responses": [
        {"content": "middle", "score": 6.5}, {"content": "worst", "score": 1}, {"content": "best", "score": 9}]},
    "pairwise_plain": {"prompt": "Sort 3 1 2", "chosen": "best", "rejected": "worst"},
    "pairwise_conversational": {"prompt": USER, "chosen": [{"role": "assistant", "content": "best"}],
                                "rejected": [{"role": "assistant", "content": "worst"}]},
    "pairwise_implicit": {"chosen": USER + [{"role": "assistant", "content": "best"}],
                          "rejected": USER + [{"role": "assistant", "content": "worst"}]},
}


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("shape", ROWS)
def test_each_shape_becomes_ranks_best_first(tmp_path, shape):
    rec, = read_preference(_jsonl(tmp_path / "d.jsonl", [ROWS[shape]]))
    texts = [r.content for r in rec.responses]
    assert texts[0] == "best" and texts[-1] == "worst"
    assert [r.rank for r in rec.responses] == list(range(len(texts)))
    assert rec.prompt[0].role == "user" and rec.prompt[0].content == "Sort 3 1 2"
    assert rec.id == ("a" if shape == "ranked" else "row-0")


def test_parquet_and_save_to_disk_with_extra_columns_and_metadata(tmp_path):
    rows = [{**ROWS["pairwise_plain"], "source": "x", "metadata": {"answer": "1 2 3"}},
            {**ROWS["pairwise_plain"], "source": "y", "metadata": {"answer": "4 5"}}]
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(tmp_path / "d.parquet")
    ds.save_to_disk(tmp_path / "saved")
    for path in (tmp_path / "d.parquet", tmp_path / "saved"):
        recs = list(read_preference(path))
        assert [r.metadata for r in recs] == [{"answer": "1 2 3"}, {"answer": "4 5"}]
        assert [r.responses[1].content for r in recs] == ["worst", "worst"]


def test_scored_ties_keep_their_order(tmp_path):
    row = {"prompt": "q", "responses": [{"content": "first", "score": 1}, {"content": "second", "score": 1},
                                        {"content": "top", "score": 2}]}
    rec, = read_preference(_jsonl(tmp_path / "d.jsonl", [row]))
    assert [r.content for r in rec.responses] == ["top", "first", "second"]


@pytest.mark.parametrize("row, needle", [
    ({"prompt": "q", "responses": [{"content": "a", "rank": 0}]}, r"d.jsonl:2: responses: needs at least two"),
    ({"prompt": "q", "responses": [{"content": "a", "rank": 0}, {"content": "b", "score": 1}]},
     r"d.jsonl:2: responses: every response needs a rank"),
    ({"prompt": "q", "responses": [{"content": "a", "rank": 0}, {"content": "b", "rank": 0}]},
     r"d.jsonl:2: responses: ranks must be distinct"),
    ({"prompt": "q", "responses": [{"content": "a", "rank": 0}, {"rank": 1}]},
     r"d.jsonl:2: responses.1.content: Field required"),
    ({"prompt": "q", "chosen": "a"}, r"d.jsonl:2: a pairwise row needs both chosen and rejected"),
    ({"prompt": "q"}, r"d.jsonl:2: needs responses"),
    ({"prompt": "  ", "chosen": "a", "rejected": "b"}, r"d.jsonl:2: prompt: .*non-empty user message"),
    ({"prompt": [{"role": "robot", "content": "hi"}], "chosen": "a", "rejected": "b"}, r"d.jsonl:2: prompt"),
    ({"chosen": "a", "rejected": "b"}, r"d.jsonl:2: a pairwise row with plain-text"),
    ({"prompt": USER, "chosen": [{"role": "user", "content": "a"}], "rejected": "b"},
     r"d.jsonl:2: chosen: must be one assistant message"),
])
def test_a_bad_row_names_file_row_and_field(tmp_path, row, needle):
    path = _jsonl(tmp_path / "d.jsonl", [ROWS["ranked"], row])
    with pytest.raises(SeftError, match=needle):
        list(read_preference(path))


def test_a_bad_parquet_row_is_named_by_index(tmp_path):
    datasets.Dataset.from_list([{"prompt": "q", "chosen": "a", "rejected": "b"},
                                {"prompt": "q", "chosen": "a", "rejected": None}]).to_parquet(tmp_path / "d.parquet")
    with pytest.raises(SeftError, match=r"d.parquet: row 1: a pairwise row needs both"):
        list(read_preference(tmp_path / "d.parquet"))


def test_prompts_plain_or_conversational(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [{"prompt": "hi", "metadata": {"answer": 3}}, {"id": 7, "prompt": USER}])
    recs = list(read_prompts(path))
    assert [(r.id, r.prompt[0].content, r.metadata) for r in recs] == [("row-0", "hi", {"answer": 3}),
                                                                        ("7", "Sort 3 1 2", None)]
    with pytest.raises(SeftError, match=r"p.jsonl:1: prompt: missing"):
        list(read_prompts(_jsonl(tmp_path / "p.jsonl", [{"id": "x"}])))
