from seft.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LabelItem(_message.Message):
    __slots__ = ("id", "prompt", "original", "revised", "metadata")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    REVISED_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    prompt: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    original: str
    revised: str
    metadata: str
    def __init__(self, id: _Optional[str] = ..., prompt: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., original: _Optional[str] = ..., revised: _Optional[str] = ..., metadata: _Optional[str] = ...) -> None: ...

class LabelRule(_message.Message):
    __slots__ = ("alpha", "beta", "p", "relabel_to", "seed")
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    P_FIELD_NUMBER: _ClassVar[int]
    RELABEL_TO_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    alpha: float
    beta: float
    p: float
    relabel_to: _common_pb2.RevisionLabel
    seed: int
    def __init__(self, alpha: _Optional[float] = ..., beta: _Optional[float] = ..., p: _Optional[float] = ..., relabel_to: _Optional[_Union[_common_pb2.RevisionLabel, str]] = ..., seed: _Optional[int] = ...) -> None: ...

class LabelRequest(_message.Message):
    __slots__ = ("request_id", "items", "rule")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    items: _containers.RepeatedCompositeFieldContainer[LabelItem]
    rule: LabelRule
    def __init__(self, request_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[LabelItem, _Mapping]]] = ..., rule: _Optional[_Union[LabelRule, _Mapping]] = ...) -> None: ...

class LabelResult(_message.Message):
    __slots__ = ("id", "score", "label", "relabelled")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    RELABELLED_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: _common_pb2.PairScore
    label: _common_pb2.RevisionLabel
    relabelled: bool
    def __init__(self, id: _Optional[str] = ..., score: _Optional[_Union[_common_pb2.PairScore, _Mapping]] = ..., label: _Optional[_Union[_common_pb2.RevisionLabel, str]] = ..., relabelled: _Optional[bool] = ...) -> None: ...

class LabelResponse(_message.Message):
    __slots__ = ("request_id", "results", "offset")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    results: _containers.RepeatedCompositeFieldContainer[LabelResult]
    offset: int
    def __init__(self, request_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[LabelResult, _Mapping]]] = ..., offset: _Optional[int] = ...) -> None: ...
