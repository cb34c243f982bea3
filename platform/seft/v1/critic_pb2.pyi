from seft.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScoreItem(_message.Message):
    __slots__ = ("prompt", "response", "metadata")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    prompt: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    response: str
    metadata: str
    def __init__(self, prompt: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., response: _Optional[str] = ..., metadata: _Optional[str] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("request_id", "items")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    items: _containers.RepeatedCompositeFieldContainer[ScoreItem]
    def __init__(self, request_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[ScoreItem, _Mapping]]] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("request_id", "rewards", "offset")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    rewards: _containers.RepeatedScalarFieldContainer[float]
    offset: int
    def __init__(self, request_id: _Optional[str] = ..., rewards: _Optional[_Iterable[float]] = ..., offset: _Optional[int] = ...) -> None: ...

class PairItem(_message.Message):
    __slots__ = ("prompt", "original", "revised", "metadata")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    REVISED_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    prompt: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    original: str
    revised: str
    metadata: str
    def __init__(self, prompt: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., original: _Optional[str] = ..., revised: _Optional[str] = ..., metadata: _Optional[str] = ...) -> None: ...

class ScorePairsRequest(_message.Message):
    __slots__ = ("request_id", "items")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    items: _containers.RepeatedCompositeFieldContainer[PairItem]
    def __init__(self, request_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[PairItem, _Mapping]]] = ...) -> None: ...

class ScorePairsResponse(_message.Message):
    __slots__ = ("request_id", "scores", "offset")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    scores: _containers.RepeatedCompositeFieldContainer[_common_pb2.PairScore]
    offset: int
    def __init__(self, request_id: _Optional[str] = ..., scores: _Optional[_Iterable[_Union[_common_pb2.PairScore, _Mapping]]] = ..., offset: _Optional[int] = ...) -> None: ...
