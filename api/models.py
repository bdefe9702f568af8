"""Request and response models: the OpenAPI document and the validation both use them."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

POST_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"   # the same rule as the CHECK in api/sql
POST_ID_MAX_LENGTH = 128
MAX_BATCH_POST_IDS = 100

PostId = Field(..., pattern=POST_ID_PATTERN, max_length=POST_ID_MAX_LENGTH,
               description="1-128 characters from A-Z a-z 0-9 _ . : -", examples=["test-post-id"])


class LikeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    postId: StrictStr = PostId
    op: Literal["like", "unlike"]
    clientId: StrictStr | None = Field(None, description="The signed id the server issued; omit it to be issued one.")


class LikeResponse(BaseModel):
    postId: str
    op: Literal["like", "unlike"]
    liked: bool
    changed: bool = Field(description="false when the like or unlike was already in effect")
    count: int
    clientId: str


class CountResponse(BaseModel):
    postId: str
    count: int
    liked: bool | None = Field(None, description="present when X-Client-Id is sent")


class CountsResponse(BaseModel):
    counts: dict[str, int]
    liked: dict[str, bool] | None = Field(None, description="present when X-Client-Id is sent")
    readOnly: bool = Field(description="true while the kill switch makes likes read-only; "
                                       "it may lag the switch by up to CACHE_TTL_SECONDS")


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
