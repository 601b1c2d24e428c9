"""Settings read from the environment (and a `.env` file), validated once at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting the bot reads. The README's configuration table mirrors this class."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
    )

    discord_token: SecretStr = Field(min_length=1)
    segmind_api_key: SecretStr = Field(min_length=1)
    segmind_base_url: str = "https://api.segmind.com"
    segmind_upload_url: str = "https://workflows-api.segmind.com/upload-asset"
    database_path: Path = Path("data/bot.db")
    # postgresql://user:password@host/name selects PostgreSQL instead of the SQLite file.
    database_url: SecretStr | None = None
    # A fleet: Discord's shards in all, and those this process runs (None: all of them).
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: list[int] | None = None
    # How long a process's hold on a job lasts unrenewed: a dead process's jobs move on after it.
    job_lease_seconds: float = Field(default=30.0, ge=1, le=600)
    segmind_poll_interval_max: float = Field(default=30.0, gt=0, le=300)
    segmind_requests_per_minute: int = Field(default=50, ge=1)
    segmind_download_max_bytes: int = Field(default=500 * 1024 * 1024, ge=1)
    segmind_retry_attempts: int = Field(default=6, ge=1, le=20)
    segmind_retry_base_delay: float = Field(default=1.0, gt=0, le=60)
    queue_guild_concurrency: int = Field(default=2, ge=1)
    queue_global_concurrency: int = Field(default=8, ge=1)
    queue_member_pending_max: int = Field(default=3, ge=1)
    queue_guild_length_max: int = Field(default=25, ge=1)
    image_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    image_max_pixels: int = Field(default=4096 * 4096, ge=1)
    status_update_seconds: float = Field(default=5.0, gt=0)
    message_retry_seconds: float = Field(default=5.0, gt=0, le=600)
    job_retention_days: float = Field(default=90.0, gt=0)
    # Below Docker's 10 s between SIGTERM and SIGKILL.
    shutdown_grace_seconds: float = Field(default=8.0, ge=0, le=600)
    health_interval_seconds: float = Field(default=15.0, gt=0)
    # How often to try reaching Discord at start-up before giving up (None: keep trying).
    discord_connect_attempts: int | None = Field(default=None, ge=1)
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("segmind_base_url", "segmind_upload_url")
    @classmethod
    def _plain_http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// (leave it unset for SQLite)")
        return value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _shard_list(cls, value: object) -> object:
        # SHARD_IDS=0,1 in the environment, as well as a JSON list (or one number).
        if isinstance(value, int):
            return [value]
        if isinstance(value, str) and not value.strip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()] or None
        return value

    @field_validator("shard_ids")
    @classmethod
    def _shards_fit(cls, value: list[int] | None, info: ValidationInfo) -> list[int] | None:
        if value is None:
            return None
        count = info.data.get("shard_count")
        if count is None:
            raise ValueError("needs SHARD_COUNT (how many shards the whole fleet runs)")
        if len(set(value)) != len(value) or not all(0 <= shard < count for shard in value):
            raise ValueError(f"must be distinct numbers from 0 to {count - 1}")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level


def describe_settings_error(error: ValidationError) -> list[str]:
    """One line per bad setting, naming the environment variable; never echoes the value."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        variable = str(problem["loc"][0]).upper() if problem["loc"] else "settings"
        if problem["type"] == "missing":
            reason = "is not set (put it in the environment or in .env)"
        elif problem["type"] in {"string_too_short", "too_short"}:
            reason = "is empty"
        else:
            reason = problem["msg"].removeprefix("Value error, ")
            reason = reason[0].lower() + reason[1:] if reason else "is not valid"
        lines.append(f"{variable} {reason}")
    return lines
