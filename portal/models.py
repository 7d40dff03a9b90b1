"""The portal's tables: students, test series, exams and exam attempts.

Every student takes every test series (the catalog is small and shared); an
attempt records one submission of one exam. `attempts` is indexed on
(student_id, series_id), the shape of `get_all_exam_attempts`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Student(Base):
    __tablename__ = "students"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class TestSeries(Base):
    __tablename__ = "test_series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class Exam(Base):
    __tablename__ = "exams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("test_series.id"), index=True)
    title: Mapped[str] = mapped_column(String(100))


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (Index("ix_attempts_student_series", "student_id", "series_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.id"))
    series_id: Mapped[int] = mapped_column(ForeignKey("test_series.id"))
    exam_id: Mapped[int] = mapped_column(ForeignKey("exams.id"))
    score: Mapped[int] = mapped_column(Integer)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
