"""schedules

Revision ID: 0004
Revises: 0003
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('schedules',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('owner', sa.String(length=128), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('source_run_id', sa.String(length=32), nullable=False),
    sa.Column('inputs', sa.Text(), nullable=False),
    sa.Column('outputs', sa.Text(), nullable=False),
    sa.Column('cron', sa.String(length=128), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('starting_deadline_seconds', sa.Integer(), nullable=False),
    sa.Column('hyperparameters', sa.JSON(), nullable=False),
    sa.Column('hardware', sa.JSON(), nullable=False),
    sa.Column('environment', sa.JSON(), nullable=False),
    sa.Column('image', sa.String(length=512), nullable=True),
    sa.Column('suspended', sa.Boolean(), nullable=False),
    sa.Column('backend', sa.String(length=32), nullable=False),
    sa.Column('backend_ref', sa.String(length=256), nullable=True),
    sa.Column('next_fire_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('firing_run_id', sa.String(length=32), nullable=True),
    sa.Column('firing_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_fired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_run_id', sa.String(length=32), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['source_run_id'], ['runs.id'], ),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_schedules_owner'), ['owner'], unique=False)

    # The schedule that fired a run (no foreign key: runs outlive their schedule).
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('schedule_id', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_runs_schedule_id'), ['schedule_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_schedule_id'))
        batch_op.drop_column('schedule_id')
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_schedules_owner'))
    op.drop_table('schedules')
