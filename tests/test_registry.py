"""The topic registry on its own, without HTTP: fan-out, bounded queues, label subscriptions, unsubscribe."""

from __future__ import annotations

import asyncio

from sentra.lines import Line
from sentra.models import Agent
from sentra.registry import AgentUpdate, Subscription, TopicRegistry


def make_agent(agent_id: str = "a", *, owner: str = "alice", labels: dict[str, str] | None = None) -> Agent:
    return Agent(1, agent_id, "", owner, "running", None, labels or {}, 0.0, 0.0)


def make_lines(agent_id: str, first: int, count: int) -> list[Line]:
    return [Line(agent_id, seq, 0.0, "INFO", f"line {seq}", "stdout", {}) for seq in range(first, first + count)]


def seqs(items: list[Line | AgentUpdate]) -> list[int]:
    return [item.seq for item in items if isinstance(item, Line)]


def test_every_subscriber_gets_lines_in_commit_order_with_status_changes_in_place() -> None:
    registry = TopicRegistry()
    agent = make_agent()
    first, second = Subscription("alice", agent_ids={"a"}), Subscription("bob", agent_ids={"a"})
    registry.subscribe(first)
    registry.subscribe(second)
    registry.lines_committed(agent, make_lines("a", 1, 3))
    registry.lines_committed(agent, make_lines("a", 4, 2))
    finished = make_agent()
    finished.status = "completed"
    registry.agent_changed(finished)
    registry.lines_committed(agent, make_lines("a", 6, 1))

    for sub in (first, second):
        items = sub.take()
        assert seqs(items[:5]) == [1, 2, 3, 4, 5]
        assert isinstance(items[5], AgentUpdate) and items[5].agent.status == "completed"
        assert seqs(items[6:]) == [6]
    assert registry.deliveries == 12


def test_subscribers_share_the_same_line_objects() -> None:
    registry = TopicRegistry()
    first, second = Subscription("alice", agent_ids={"a"}), Subscription("alice", agent_ids={"a"})
    registry.subscribe(first)
    registry.subscribe(second)
    lines = make_lines("a", 1, 2)
    registry.lines_committed(make_agent(), lines)
    # One Line object (and so one cached wire encoding) serves every subscriber.
    assert all(x is y for x, y in zip(first.take(), second.take(), strict=True))


def test_lines_of_other_agents_are_not_delivered() -> None:
    registry = TopicRegistry()
    sub = Subscription("alice", agent_ids={"a"})
    registry.subscribe(sub)
    registry.lines_committed(make_agent("b"), make_lines("b", 1, 3))
    assert sub.take() == []


def test_subscriber_that_falls_behind_the_buffer_is_cut_and_others_are_not() -> None:
    registry = TopicRegistry()
    slow = Subscription("alice", agent_ids={"a"}, max_pending=10)
    other = Subscription("alice", agent_ids={"a"}, max_pending=10)
    reasons: list[str] = []
    slow.on_cut = reasons.append
    registry.subscribe(slow)
    registry.subscribe(other)
    agent = make_agent()
    for first in range(1, 12, 3):
        registry.lines_committed(agent, make_lines("a", first, 3))
        other.take()
    assert slow.cut_reason == "overflow"
    assert reasons == ["overflow"]
    assert slow.take() == []  # the backlog is dropped: the client resumes from SQLite
    assert registry.cut_offs["overflow"] == 1
    assert registry.open_streams == 1
    assert other.cut_reason is None
    registry.lines_committed(agent, make_lines("a", 13, 1))
    assert seqs(other.take()) == [13]
    assert slow.take() == []


async def test_subscriber_waiting_for_lines_is_not_cut_by_one_large_commit() -> None:
    registry = TopicRegistry()
    sub = Subscription("alice", agent_ids={"a"}, max_pending=10)
    registry.subscribe(sub)
    waiter = asyncio.create_task(sub.wait(5.0))
    await asyncio.sleep(0)
    # A group commit can carry more lines than the buffer; a reader that was idle takes them at once.
    registry.lines_committed(make_agent(), make_lines("a", 1, 50))
    registry.lines_committed(make_agent(), make_lines("a", 51, 50))
    assert await waiter is True
    assert sub.cut_reason is None
    assert seqs(sub.take()) == list(range(1, 101))


async def test_busy_subscriber_is_cut_when_its_backlog_passes_the_buffer() -> None:
    registry = TopicRegistry()
    sub = Subscription("alice", agent_ids={"a"}, max_pending=10)
    registry.subscribe(sub)
    waiter = asyncio.create_task(sub.wait(5.0))
    await asyncio.sleep(0)
    registry.lines_committed(make_agent(), make_lines("a", 1, 50))
    await waiter
    assert len(sub.take()) == 50
    # Now busy writing those 50 lines and not waiting: further lines count against the buffer.
    registry.lines_committed(make_agent(), make_lines("a", 51, 6))
    assert sub.cut_reason is None
    registry.lines_committed(make_agent(), make_lines("a", 57, 6))
    assert sub.cut_reason == "overflow"


async def test_wait_returns_false_on_timeout_and_true_when_cut() -> None:
    registry = TopicRegistry()
    sub = Subscription("alice", agent_ids={"a"})
    registry.subscribe(sub)
    assert await sub.wait(0.01) is False
    waiter = asyncio.create_task(sub.wait(5.0))
    await asyncio.sleep(0)
    registry.cut(sub, "shutdown")
    assert await waiter is True
    assert sub.cut_reason == "shutdown"


def test_label_subscription_follows_matching_agents_created_later() -> None:
    registry = TopicRegistry()
    sub = Subscription("alice", label_filter=lambda agent: agent.labels.get("batch") == "42")
    registry.subscribe(sub)
    matching = make_agent("m", labels={"batch": "42"})
    other = make_agent("o", labels={"batch": "7"})
    registry.agent_changed(matching)
    registry.lines_committed(matching, make_lines("m", 1, 2))
    registry.agent_changed(other)
    registry.lines_committed(other, make_lines("o", 1, 2))
    items = sub.take()
    assert isinstance(items[0], AgentUpdate) and items[0].agent.id == "m"
    assert [(line.agent, line.seq) for line in items[1:] if isinstance(line, Line)] == [("m", 1), ("m", 2)]
    assert len(items) == 3
    registry.agent_deleted(matching)
    deleted = sub.take()
    assert len(deleted) == 1 and isinstance(deleted[0], AgentUpdate) and deleted[0].deleted


def test_unsubscribed_stream_gets_nothing_and_unsubscribe_twice_is_safe() -> None:
    registry = TopicRegistry()
    sub = Subscription("alice", agent_ids={"a"})
    label_sub = Subscription("alice", label_filter=lambda agent: True)
    registry.subscribe(sub)
    registry.subscribe(label_sub)
    assert registry.open_streams == 2 and registry.streams_of("alice") == 2
    registry.unsubscribe(sub)
    registry.unsubscribe(sub)
    registry.unsubscribe(label_sub)
    registry.lines_committed(make_agent(), make_lines("a", 1, 3))
    assert sub.take() == [] and label_sub.take() == []
    assert registry.open_streams == 0 and registry.streams_of("alice") == 0
    assert registry.deliveries == 0


def test_cut_token_ends_only_the_streams_of_that_token() -> None:
    registry = TopicRegistry()
    revoked = Subscription("alice", token_ids=("ticket", "j1"), agent_ids={"a"})
    kept = Subscription("alice", token_ids=("j2",), agent_ids={"a"})
    registry.subscribe(revoked)
    registry.subscribe(kept)
    assert registry.cut_token("j1") == 1
    assert registry.cut_token("ticket") == 0  # already cut
    assert revoked.cut_reason == "token_revoked"
    assert kept.cut_reason is None
    registry.lines_committed(make_agent(), make_lines("a", 1, 1))
    assert revoked.take() == []
    assert seqs(kept.take()) == [1]
    assert registry.deliveries == 1
    registry.cut_all("shutdown")
    assert kept.cut_reason == "shutdown"
    assert registry.cut_offs == {"token_revoked": 1, "shutdown": 1}
