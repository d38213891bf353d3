"""Tests against real servers (PostgreSQL, Slurm); see conftest.py."""
