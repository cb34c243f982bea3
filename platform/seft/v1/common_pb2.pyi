from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RevisionLabel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVISION_LABEL_UNSPECIFIED: _ClassVar[RevisionLabel]
    MAJOR_REVISE: _ClassVar[RevisionLabel]
    MINOR_REVISE: _ClassVar[RevisionLabel]
    NO_REVISE: _ClassVar[RevisionLabel]
REVISION_LABEL_UNSPECIFIED: RevisionLabel
MAJOR_REVISE: RevisionLabel
MINOR_REVISE: RevisionLabel
NO_REVISE: RevisionLabel

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class SamplingParams(_message.Message):
    __slots__ = ("max_new_tokens", "temperature", "top_p", "seed")
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    def __init__(self, max_new_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("prompt_tokens", "completion_tokens")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    completion_tokens: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ...) -> None: ...

class PairScore(_message.Message):
    __slots__ = ("reward_original", "reward_revised", "benefit")
    REWARD_ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    REWARD_REVISED_FIELD_NUMBER: _ClassVar[int]
    BENEFIT_FIELD_NUMBER: _ClassVar[int]
    reward_original: float
    reward_revised: float
    benefit: float
    def __init__(self, reward_original: _Optional[float] = ..., reward_revised: _Optional[float] = ..., benefit: _Optional[float] = ...) -> None: ...
