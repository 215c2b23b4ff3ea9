"""credentials

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Users' credentials on the process and docker backends; values only encrypted (Fernet).
    op.create_table('credentials',
    sa.Column('user', sa.String(length=128), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('ciphertext', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user'], ['users.name'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user', 'key')
    )


def downgrade() -> None:
    op.drop_table('credentials')
