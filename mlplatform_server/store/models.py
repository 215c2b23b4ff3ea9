"""SQLAlchemy ORM tables. Schema changes go through Alembic (store/migrations)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(value: dt.datetime | None) -> str | None:
    """A stored time as the API shows it (ISO 8601), or None."""
    return value.isoformat() if value else None


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every database (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, dt.datetime: UTCDateTime}


class User(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    """A user's API token. Only a SHA-256 digest is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    note: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Credential(Base):
    """A user's credential on the process and docker backends: the value only Fernet-encrypted
    (key in DATA_DIR/credentials.key; store/credentials.py). Kubernetes keeps them in Secrets."""

    __tablename__ = "credentials"

    user: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    versions: Mapped[list["ModelVersion"]] = relationship(
        back_populates="model", order_by="ModelVersion.id", cascade="all, delete-orphan"
    )


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(80))
    module_source: Mapped[str] = mapped_column(Text)
    source_name: Mapped[str] = mapped_column(String(512), default="")
    hyperparameters: Mapped[list[Any]] = mapped_column(default=list)
    methods: Mapped[list[Any]] = mapped_column(default=list)
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    image: Mapped[str | None] = mapped_column(String(512), default=None)
    git_commit: Mapped[str | None] = mapped_column(String(64), default=None)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    model: Mapped[Model] = relationship(back_populates="versions")


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_status", "status"), Index("ix_runs_user", "launched_by"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # train | batch-predict
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hardware: Mapped[dict[str, Any]] = mapped_column(default=dict)
    environment: Mapped[dict[str, Any]] = mapped_column(default=dict)
    image: Mapped[str | None] = mapped_column(String(512), default=None)
    image_digest: Mapped[str | None] = mapped_column(String(128), default=None)
    git_commit: Mapped[str | None] = mapped_column(String(64), default=None)
    launched_by: Mapped[str] = mapped_column(String(128))
    backend: Mapped[str] = mapped_column(String(32))
    backend_ref: Mapped[str | None] = mapped_column(String(256), default=None)
    token_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    source_run_id: Mapped[str | None] = mapped_column(String(32), default=None)
    replicated_from: Mapped[str | None] = mapped_column(String(32), default=None)
    inputs: Mapped[str | None] = mapped_column(Text, default=None)
    outputs: Mapped[str | None] = mapped_column(Text, default=None)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Scheduled batch prediction (migration 0004): the schedule that fired this run. No foreign
    # key: the run stays on record (with this id) after its schedule is deleted.
    schedule_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)

    version: Mapped[ModelVersion] = relationship()
    metrics: Mapped[list["Metric"]] = relationship(
        back_populates="run", order_by="Metric.id", cascade="all, delete-orphan"
    )
    schedule: Mapped["Schedule | None"] = relationship(
        primaryjoin="foreign(Run.schedule_id) == Schedule.id", viewonly=True
    )


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_run_name", "run_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    step: Mapped[int | None] = mapped_column(Integer, default=None)
    value: Mapped[float] = mapped_column(Float)
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    run: Mapped[Run] = relationship(back_populates="metrics")


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    status: Mapped[str] = mapped_column(String(16), default="deploying")
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    url: Mapped[str | None] = mapped_column(String(512), default=None)
    replicas: Mapped[int] = mapped_column(Integer, default=1)
    hardware: Mapped[dict[str, Any]] = mapped_column(default=dict)
    environment: Mapped[dict[str, Any]] = mapped_column(default=dict)
    image: Mapped[str | None] = mapped_column(String(512), default=None)
    backend: Mapped[str] = mapped_column(String(32))
    backend_ref: Mapped[str | None] = mapped_column(String(256), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # Revisions and scaling (migration 0003): the revision now served, a counter bumped by every
    # rolled-out change (see DeploymentSpec.generation), and the autoscaler's bounds when it is on.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    autoscale_min: Mapped[int | None] = mapped_column(Integer, default=None)
    autoscale_max: Mapped[int | None] = mapped_column(Integer, default=None)
    autoscale_target_cpu: Mapped[int | None] = mapped_column(Integer, default=None)

    version: Mapped[ModelVersion] = relationship()
    run: Mapped[Run] = relationship()
    revisions: Mapped[list["DeploymentRevision"]] = relationship(
        back_populates="deployment", order_by="DeploymentRevision.revision", cascade="all, delete-orphan"
    )


class DeploymentRevision(Base):
    """What one deploy (or rollback) to a deployment name served: rollback redeploys one of these."""

    __tablename__ = "deployment_revisions"
    __table_args__ = (UniqueConstraint("deployment_id", "revision", name="uq_deployment_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    image: Mapped[str | None] = mapped_column(String(512), default=None)
    hardware: Mapped[dict[str, Any]] = mapped_column(default=dict)
    environment: Mapped[dict[str, Any]] = mapped_column(default=dict)
    replicas: Mapped[int] = mapped_column(Integer, default=1)
    rollback_of: Mapped[int | None] = mapped_column(Integer, default=None)  # the revision it restored
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    deployment: Mapped[Deployment] = relationship(back_populates="revisions")
    version: Mapped[ModelVersion] = relationship()
    run: Mapped[Run] = relationship()


class Schedule(Base):
    """A scheduled batch prediction (migration 0004). Names are unique across the platform, like
    deployment names: on Kubernetes every schedule is a CronJob in the one namespace."""

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    source_run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    inputs: Mapped[str] = mapped_column(Text)
    outputs: Mapped[str] = mapped_column(Text)  # a pattern: {run_id} and {date} are expanded per firing
    cron: Mapped[str] = mapped_column(String(128))
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    starting_deadline_seconds: Mapped[int] = mapped_column(Integer, default=300)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hardware: Mapped[dict[str, Any]] = mapped_column(default=dict)
    environment: Mapped[dict[str, Any]] = mapped_column(default=dict)
    image: Mapped[str | None] = mapped_column(String(512), default=None)
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    backend: Mapped[str] = mapped_column(String(32))
    backend_ref: Mapped[str | None] = mapped_column(String(256), default=None)
    # The platform's own scheduler (backends that do not fire schedules themselves): the next due
    # time, and a firing claimed but not yet recorded as a run (so a crash neither loses nor
    # duplicates it: the run gets this id).
    next_fire_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    firing_run_id: Mapped[str | None] = mapped_column(String(32), default=None)
    firing_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_fired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_run_id: Mapped[str | None] = mapped_column(String(32), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    version: Mapped[ModelVersion] = relationship()
