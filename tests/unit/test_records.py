import pytest

from seft.errors import SeftError
from seft.records import PreferenceRecord, PromptRecord, read_jsonl, write_jsonl


def test_roundtrip_and_counts(tmp_path):
    path = tmp_path / "x.jsonl"
    recs = [PromptRecord(id=f"p{i}", prompt=[{"role": "user", "content": f"q{i} ü"}]) for i in range(3)]
    assert write_jsonl(path, recs) == 3
    assert [r.id for r in read_jsonl(path, PromptRecord)] == ["p0", "p1", "p2"]
    assert next(read_jsonl(path))["prompt"][0]["content"] == "q0 ü"


def test_bad_record_names_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "prompt": [{"role": "user", "content": "hi"}]}\n'
                    '{"id": "b", "prompt": [{"role": "robot", "content": "hi"}]}\n')
    with pytest.raises(SeftError, match=r"bad.jsonl:2: prompt.0.role.*'robot'"):
        list(read_jsonl(path, PromptRecord))


def test_invalid_json_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a"}\n{oops\n')
    with pytest.raises(SeftError, match="bad.jsonl:2: not valid JSON"):
        list(read_jsonl(path))


@pytest.mark.parametrize("responses, needle", [
    ([{"rank": 1, "content": "a"}, {"rank": 2, "content": "b"}], "including 0"),
    ([{"rank": 0, "content": "a"}, {"rank": 0, "content": "b"}], "distinct"),
    ([{"rank": 0, "content": "a"}, {"rank": -1, "content": "b"}], "greater than or equal to 0"),
])
def test_preference_ranks_are_checked(tmp_path, responses, needle):
    with pytest.raises(ValueError, match=needle):
        PreferenceRecord(id="x", prompt=[{"role": "user", "content": "q"}], responses=responses)


def test_empty_prompt_is_rejected():
    with pytest.raises(ValueError, match="non-empty user message"):
        PromptRecord(id="x", prompt=[{"role": "user", "content": "  "}])


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "x.jsonl"
    write_jsonl(path, [{"a": 1}])

    def broken():
        yield {"a": 2}
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        write_jsonl(path, broken())
    assert path.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["x.jsonl"]
