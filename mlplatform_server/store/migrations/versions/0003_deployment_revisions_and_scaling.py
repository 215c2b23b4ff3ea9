"""deployment revisions and scaling

Revision ID: 0003
Revises: 0002
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('revision', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('generation', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('autoscale_min', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('autoscale_max', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('autoscale_target_cpu', sa.Integer(), nullable=True))

    op.create_table('deployment_revisions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('deployment_id', sa.String(length=32), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('image', sa.String(length=512), nullable=True),
    sa.Column('hardware', sa.JSON(), nullable=False),
    sa.Column('environment', sa.JSON(), nullable=False),
    sa.Column('replicas', sa.Integer(), nullable=False),
    sa.Column('rollback_of', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployments.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('deployment_id', 'revision', name='uq_deployment_revision')
    )
    with op.batch_alter_table('deployment_revisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deployment_revisions_deployment_id'), ['deployment_id'], unique=False)

    # Deployments made before revisions existed: their current state is revision 1.
    op.execute(
        "INSERT INTO deployment_revisions (deployment_id, revision, version_id, run_id, image, hardware,"
        " environment, replicas, created_by, created_at)"
        " SELECT id, 1, version_id, run_id, image, hardware, environment, replicas, owner, created_at"
        " FROM deployments"
    )


def downgrade() -> None:
    with op.batch_alter_table('deployment_revisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deployment_revisions_deployment_id'))
    op.drop_table('deployment_revisions')
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_column('autoscale_target_cpu')
        batch_op.drop_column('autoscale_max')
        batch_op.drop_column('autoscale_min')
        batch_op.drop_column('generation')
        batch_op.drop_column('revision')
