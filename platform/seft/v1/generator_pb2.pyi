from seft.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Prompt(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ...) -> None: ...

class RefineParams(_message.Message):
    __slots__ = ("rounds", "samples", "keep_best")
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    KEEP_BEST_FIELD_NUMBER: _ClassVar[int]
    rounds: int
    samples: int
    keep_best: bool
    def __init__(self, rounds: _Optional[int] = ..., samples: _Optional[int] = ..., keep_best: _Optional[bool] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("request_id", "prompts", "sampling", "refine")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    REFINE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    prompts: _containers.RepeatedCompositeFieldContainer[Prompt]
    sampling: _common_pb2.SamplingParams
    refine: RefineParams
    def __init__(self, request_id: _Optional[str] = ..., prompts: _Optional[_Iterable[_Union[Prompt, _Mapping]]] = ..., sampling: _Optional[_Union[_common_pb2.SamplingParams, _Mapping]] = ..., refine: _Optional[_Union[RefineParams, _Mapping]] = ...) -> None: ...

class RefinementStep(_message.Message):
    __slots__ = ("text", "feedback", "reward", "kept")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    text: str
    feedback: str
    reward: float
    kept: bool
    def __init__(self, text: _Optional[str] = ..., feedback: _Optional[str] = ..., reward: _Optional[float] = ..., kept: _Optional[bool] = ...) -> None: ...

class Generation(_message.Message):
    __slots__ = ("text", "usage", "steps")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    text: str
    usage: _common_pb2.Usage
    steps: _containers.RepeatedCompositeFieldContainer[RefinementStep]
    def __init__(self, text: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[RefinementStep, _Mapping]]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("request_id", "generations", "offset")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    generations: _containers.RepeatedCompositeFieldContainer[Generation]
    offset: int
    def __init__(self, request_id: _Optional[str] = ..., generations: _Optional[_Iterable[_Union[Generation, _Mapping]]] = ..., offset: _Optional[int] = ...) -> None: ...
