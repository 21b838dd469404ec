"""The agent desk's library through its real HTTP API on a real SQLite file: past conversations seeded through
the real conversation service (the REST webhook and the bank's app) and real hand-overs (accepted, transferred,
closed, rated), then searched by every filter, opened, labelled; canned replies in every scope, and what a
short code expands to when an agent sends it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from bot.channels.app import AppCustomer, sign_token
from bot.config import AppChannelConfig, ChannelsConfig
from bot.handoff.agents import create_agent
from bot.storage import Database
from bot.storage.models import Conversation, Handoff
from bot.web.app import create_app
from tests.postgres_support import fresh_postgres_url

NOON = dt.datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
PASSWORD = "correct horse battery"
SECRET = "test-secret-of-the-banks-app-backend-0123456789"
CARD = "6222021234567890128"
PHONE = "13812346688"
# 2026-11-02 00:30 in Shanghai is still 1 November in UTC: the date filters count the bank's days
OLD_START = dt.datetime(2026, 11, 1, 16, 30, tzinfo=dt.UTC)


class World:
    """The seeded conversations' ids and the agents' headers."""

    def __init__(self, client: TestClient, database: Database) -> None:
        self.client, self.database = client, database
        self.headers = {name: login(client, name) for name in ("wang", "li", "boss", "root", "zhou")}
        self.ids = {name: client.get("/api/agent/queue", headers=h).json()["agent"]["id"]
                    for name, h in self.headers.items()}
        self.card_loss = ""  # 借记卡与账户, served and closed by 小王, rated 5, started in early November
        self.app_customer = ""  # 张伟 (C0001) in the app, 信用卡, served by 小李
        self.no_handoff = ""  # the bot answered alone: only supervisors see it
        self.transferred = ""  # 信用卡, accepted by 小李, transferred to 借记卡与账户, 小周 for a while


def login(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/agent/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def rest(client: TestClient, sender: str, text: str) -> list[str]:
    response = client.post("/webhooks/rest/webhook", json={"sender": sender, "message": text})
    assert response.status_code == 200, response.text
    return [r.get("text", "") for r in response.json()]


def waiting_handoff(world: World, agent: str) -> dict:
    waiting = world.client.get("/api/agent/queue", headers=world.headers[agent]).json()["waiting"]
    assert len(waiting) == 1, waiting
    return waiting[0]


def accept(world: World, agent: str) -> dict:
    handoff = waiting_handoff(world, agent)
    response = world.client.post(f"/api/agent/handoffs/{handoff['handoff_id']}/accept", headers=world.headers[agent])
    assert response.status_code == 200, response.text
    return handoff


@contextmanager
def database_at(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A real SQLite file, or a fresh database on the PostgreSQL server the tests run with (JSON fields are
    read with each dialect's own operators)."""
    if kind == "sqlite":
        yield Database(f"sqlite:///{tmp_path_factory.mktemp('library') / 'bot.db'}")
        return
    with fresh_postgres_url("bankbot_library") as url:
        database = Database(url)
        try:
            yield database
        finally:
            database.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, bundled_assistant,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with database_at(request.param, tmp_path_factory) as database:
        yield _world(bundled_assistant, database)


def _world(bundled_assistant, database: Database) -> World:
    channels = ChannelsConfig(app=AppChannelConfig(secret=SECRET, max_token_age_seconds=600))
    config = bundled_assistant.config.model_copy(update={"channels": channels})
    app = create_app(config, assistant=bundled_assistant, database=database)
    app.state.desk.clock = lambda: NOON
    create_agent(database, "wang", "小王", PASSWORD, groups=["借记卡与账户"])
    create_agent(database, "li", "小李", PASSWORD, groups=["信用卡"])
    create_agent(database, "zhou", "小周", PASSWORD, groups=["理财"])
    create_agent(database, "boss", "张主管", PASSWORD, role="supervisor", groups=["综合服务"])
    create_agent(database, "root", "管理员", PASSWORD, role="admin", groups=["综合服务"])
    world = World(TestClient(app), database)
    _seed(world)
    return world


def _seed(world: World) -> None:
    client = world.client
    rest(client, "card-loss", f"我的卡丢了，卡号{CARD}")
    rest(client, "card-loss", "转人工")
    handoff = accept(world, "wang")
    world.card_loss = handoff["conversation_id"]
    client.post(f"/api/agent/handoffs/{handoff['handoff_id']}/close", headers=world.headers["wang"],
                json={"disposition": "已解决"})
    rest(client, "card-loss", "5")

    token = sign_token(AppCustomer(customer_id="C0001", name="张伟", tier="金卡"), SECRET)
    app_headers = {"Authorization": f"Bearer {token}"}
    for n, text in enumerate((f"信用卡分期怎么办理，我手机{PHONE}", "转人工")):
        response = client.post("/channels/app/messages", headers=app_headers, json={"message": text,
                                                                                  "message_id": f"app-{n}"})
        assert response.status_code == 200, response.text
    world.app_customer = accept(world, "li")["conversation_id"]

    assert rest(client, "atm", "我卡尾号6688被吞了")
    world.no_handoff = _conversation_of(world, "atm")

    rest(client, "moved", "信用卡账单怎么查")
    rest(client, "moved", "转人工")
    handoff = accept(world, "li")
    world.transferred = handoff["conversation_id"]
    presence(world, "wang", "online")  # a transfer needs someone in the group to take it
    response = client.post(f"/api/agent/handoffs/{handoff['handoff_id']}/transfer", headers=world.headers["li"],
                           json={"group": "借记卡与账户", "note": "客户问的是借记卡"})
    assert response.status_code == 200, response.text
    presence(world, "wang", "away")  # new chats wait in the queue until taken by hand
    for agent in ("zhou", "wang"):  # 小周 (理财) serves it for a while, by the supervisor's choice
        response = client.post(f"/api/supervisor/handoffs/{handoff['handoff_id']}/reassign",
                               headers=world.headers["boss"], json={"agent_id": world.ids[agent]})
        assert response.status_code == 200, response.text

    with world.database.session() as session, session.begin():
        session.execute(update(Conversation).where(Conversation.id == world.card_loss)
                        .values(started_at=OLD_START))


def presence(world: World, agent: str, value: str) -> None:
    response = world.client.post("/api/agent/presence", headers=world.headers[agent], json={"presence": value})
    assert response.status_code == 200, response.text


def _conversation_of(world: World, sender: str) -> str:
    from sqlalchemy import select

    from bot.storage.models import ChannelIdentity
    with world.database.session() as session:
        return session.scalar(select(Conversation.id).join(ChannelIdentity,
                                                           ChannelIdentity.id == Conversation.identity_id)
                              .where(ChannelIdentity.external_id == sender))


def found(world: World, who: str, **filters: str) -> list[str]:
    response = world.client.get("/api/agent/conversations", headers=world.headers[who], params=filters)
    assert response.status_code == 200, response.text
    return [item["conversation_id"] for item in response.json()["items"]]


# --- search ---------------------------------------------------------------------------------------------------

def test_supervisors_see_every_conversation_newest_first(world: World) -> None:
    everything = found(world, "boss")
    assert set(everything) == {world.card_loss, world.app_customer, world.no_handoff, world.transferred}
    assert everything[-1] == world.card_loss  # the oldest
    assert found(world, "root") == everything
    assert world.client.get("/api/agent/conversations").status_code == 401


def test_agents_see_their_groups_and_what_they_served(world: World) -> None:
    assert set(found(world, "wang")) == {world.card_loss, world.transferred}
    # 小李 transferred that one away, but it was queued for 信用卡: it stays in 小李's history
    assert set(found(world, "li")) == {world.app_customer, world.transferred}
    # 小周 (理财) served it for a while before the supervisor gave it back to 小王
    assert found(world, "zhou") == [world.transferred]
    assert world.client.get(f"/api/agent/conversations/{world.card_loss}", headers=world.headers["zhou"]) \
        .status_code == 404


@pytest.mark.parametrize(("filters", "expected"), [
    ({"phone_tail": "6688"}, {"app_customer", "no_handoff"}),  # 138****6688 and 尾号6688
    ({"phone_tail": "0128"}, {"card_loss"}),  # ***************0128
    ({"phone_tail": "1234"}, set()),  # the middle of the card number is not stored
    ({"customer": "C0001"}, {"app_customer"}),
    ({"customer": "张"}, {"app_customer"}),
    ({"customer": "C9999"}, set()),
    ({"text": "卡丢了"}, {"card_loss"}),
    ({"text": CARD}, {"card_loss"}),  # the whole number finds its masked form
    ({"text": "账单怎么查"}, {"transferred"}),
    ({"text": "吞了"}, {"no_handoff"}),
    ({"date_from": "2026-11-02", "date_to": "2026-11-02"}, {"card_loss"}),
    ({"date_to": "2026-11-01"}, set()),
    ({"date_from": "2026-11-03"}, {"app_customer", "no_handoff", "transferred"}),
    ({"text": "转人工", "phone_tail": "6688"}, {"app_customer"}),  # filters combine
])
def test_every_filter_narrows(world: World, filters: dict[str, str], expected: set[str]) -> None:
    assert set(found(world, "boss", **filters)) == {getattr(world, name) for name in expected}


def test_an_agent_searching_finds_only_what_they_may_see(world: World) -> None:
    assert found(world, "wang", phone_tail="6688") == []  # 张伟's chat went to 信用卡
    assert found(world, "li", phone_tail="6688") == [world.app_customer]


def test_a_result_says_where_when_who_and_how_it_went(world: World) -> None:
    items = world.client.get("/api/agent/conversations", headers=world.headers["boss"],
                             params={"customer": "C0001"}).json()["items"]
    assert len(items) == 1
    item = items[0]
    assert item["channel"] == "app" and item["channel_label"] == "手机银行App"
    assert item["customer"] == {"id": "C0001", "name": "张伟"}
    assert item["summary"] == "信用卡分期怎么办理，我手机138****6688" and PHONE not in str(item)
    assert item["handoff"]["group"] == "信用卡" and item["handoff"]["agent"] == "小李"
    assert dt.datetime.fromisoformat(item["started_at"]).tzinfo is not None

    rated = world.client.get("/api/agent/conversations", headers=world.headers["wang"],
                             params={"phone_tail": "0128"}).json()["items"][0]
    assert rated["handoff"]["rating"] == 5 and rated["handoff"]["disposition"] == "已解决"
    assert rated["started_at"].startswith("2026-11-01T16:30")


def test_bad_search_terms_are_refused(world: World) -> None:
    for params in ({"phone_tail": "12345"}, {"phone_tail": "12a4"},
                   {"date_from": "2026-11-05", "date_to": "2026-11-01"}, {"text": "x" * 101},
                   {"text": "a\x00b"}, {"page": "0"}, {"date_from": "昨天"}):
        response = world.client.get("/api/agent/conversations", headers=world.headers["boss"], params=params)
        assert response.status_code == 422, params


def test_results_are_paged(world: World) -> None:
    first = world.client.get("/api/agent/conversations", headers=world.headers["boss"]).json()
    assert first["total"] == 4 and first["page"] == 1 and first["page_size"] == 20
    beyond = world.client.get("/api/agent/conversations", headers=world.headers["boss"], params={"page": 2}).json()
    assert beyond["items"] == [] and beyond["total"] == 4


# --- opening one ---------------------------------------------------------------------------------------------

def test_opening_a_conversation_shows_the_masked_transcript_and_the_handoffs(world: World) -> None:
    response = world.client.get(f"/api/agent/conversations/{world.card_loss}", headers=world.headers["wang"])
    assert response.status_code == 200, response.text
    opened = response.json()
    users = [t["text"] for t in opened["transcript"] if t["role"] == "user"]
    assert users[0] == "我的卡丢了，卡号***************0128" and CARD[:8] not in str(opened)
    assert any(t["role"] == "system" and "小王已接入" in t["text"] for t in opened["transcript"])
    [handoff] = opened["handoffs"]
    assert handoff["agent"] == "小王" and handoff["rating"] == 5 and handoff["group"] == "借记卡与账户"
    assert handoff["reason"] == "客户要求"


def test_another_groups_conversation_is_not_found_for_an_agent(world: World) -> None:
    unknown = world.client.get("/api/agent/conversations/" + "0" * 32, headers=world.headers["wang"])
    hidden = world.client.get(f"/api/agent/conversations/{world.app_customer}", headers=world.headers["wang"])
    assert unknown.status_code == hidden.status_code == 404
    assert hidden.json()["detail"].replace(world.app_customer, "X") == \
        unknown.json()["detail"].replace("0" * 32, "X")  # the same answer: existence does not leak
    assert world.client.get(f"/api/agent/conversations/{world.no_handoff}", headers=world.headers["li"]) \
        .status_code == 404
    assert world.client.get(f"/api/agent/conversations/{world.app_customer}", headers=world.headers["boss"]) \
        .status_code == 200


# --- labels ----------------------------------------------------------------------------------------------------

def label_url(conversation_id: str, label: str) -> str:
    return f"/api/agent/conversations/{conversation_id}/labels/{label}"


def test_labels_are_added_removed_and_searched(world: World) -> None:
    client, wang = world.client, world.headers["wang"]
    assert client.put(label_url(world.card_loss, "已回访"), headers=wang).json()["labels"] == ["已回访"]
    assert client.put(label_url(world.card_loss, "已回访"), headers=wang).json()["labels"] == ["已回访"]
    both = client.put(label_url(world.card_loss, "挂失后补卡"), headers=wang).json()["labels"]
    assert both == ["已回访", "挂失后补卡"]
    assert found(world, "wang", label="已回访") == [world.card_loss]
    assert found(world, "boss", label="挂失后补卡") == [world.card_loss]
    assert found(world, "boss", label="已回") == []  # a label matches whole
    opened = client.get(f"/api/agent/conversations/{world.card_loss}", headers=wang).json()
    assert opened["labels"] == ["已回访", "挂失后补卡"]
    in_search = client.get("/api/agent/conversations", headers=wang, params={"label": "已回访"}).json()["items"]
    assert in_search[0]["labels"] == ["已回访", "挂失后补卡"]

    assert client.delete(label_url(world.card_loss, "已回访"), headers=wang).json()["labels"] == ["挂失后补卡"]
    assert found(world, "wang", label="已回访") == []
    choices = client.get("/api/agent/labels", headers=wang).json()
    assert choices["suggested"] == ["投诉", "疑似诈骗", "已回访", "需跟进", "表扬", "咨询"]
    assert "挂失后补卡" in choices["in_use"]
    assert "挂失后补卡" not in client.get("/api/agent/labels", headers=world.headers["li"]).json()["in_use"]
    client.delete(label_url(world.card_loss, "挂失后补卡"), headers=wang)


def test_labels_are_validated_and_kept_to_visible_conversations(world: World) -> None:
    client, wang = world.client, world.headers["wang"]
    for bad in ("一二三四五六七八九十一二三四五六七", "a%07b", "%20", "a%E2%80%AEb"):
        assert client.put(label_url(world.card_loss, bad), headers=wang).status_code == 422, bad
    assert client.put(label_url(world.card_loss, "一二三四五六七八九十一二三四五六"), headers=wang).status_code == 200
    client.delete(label_url(world.card_loss, "一二三四五六七八九十一二三四五六"), headers=wang)
    assert client.put(label_url(world.app_customer, "投诉"), headers=wang).status_code == 404
    assert client.delete(label_url(world.app_customer, "投诉"), headers=wang).status_code == 404
    assert client.put(label_url("0" * 32, "投诉"), headers=world.headers["boss"]).status_code == 404
    assert client.put(label_url(world.app_customer, "投诉"), headers=world.headers["boss"]).status_code == 200
    assert found(world, "li", label="投诉") == [world.app_customer]
    client.delete(label_url(world.app_customer, "投诉"), headers=world.headers["boss"])


# --- canned replies ---------------------------------------------------------------------------------------------

def canned(world: World, who: str, method: str = "GET", path: str = "", **body):
    return world.client.request(method, f"/api/agent/canned-replies{path}", headers=world.headers[who],
                                json=body or None)


def picker(world: World, who: str) -> dict[str, str]:
    return {c["code"]: c["text"] for c in world.client.get("/api/agent/canned", headers=world.headers[who]).json()}


def send(world: World, who: str, handoff_id: int, text: str) -> str:
    response = world.client.post(f"/api/agent/handoffs/{handoff_id}/messages", headers=world.headers[who],
                                 json={"text": text})
    assert response.status_code == 200, response.text
    return response.json()["text"]


def test_who_may_manage_which_scope(world: World) -> None:
    debit = {"scope": "group", "group": "借记卡与账户"}
    assert canned(world, "wang", "POST", code="/g1", text="组内", **debit).status_code == 403
    assert canned(world, "wang", "POST", code="/a1", text="全局", scope="global").status_code == 403
    assert canned(world, "boss", "POST", code="/a1", text="全局", scope="global").status_code == 403
    assert canned(world, "boss", "POST", code="/g1", text="组内", scope="group", group="不存在的组").status_code == 422
    group_reply = canned(world, "boss", "POST", code="/g1", text="组内", scope="group", group="借记卡与账户")
    assert group_reply.status_code == 201 and group_reply.json()["editable"]
    global_reply = canned(world, "root", "POST", code="/a1", text="全局", scope="global")
    assert global_reply.status_code == 201

    mine = {r["code"]: r for r in canned(world, "wang").json()["replies"]}
    assert mine["/g1"]["scope"] == "group" and not mine["/g1"]["editable"]
    assert mine["/a1"]["scope"] == "global" and not mine["/a1"]["editable"]
    assert mine["/hi"]["scope"] == "default" and mine["/hi"]["id"] is None
    assert "/g1" not in {r["code"] for r in canned(world, "li").json()["replies"]}  # not 小李's group
    group_id, global_id = group_reply.json()["id"], global_reply.json()["id"]
    assert canned(world, "wang", "DELETE", f"/{group_id}").status_code == 403
    assert canned(world, "li", "DELETE", f"/{group_id}").status_code == 404
    assert canned(world, "boss", "PUT", f"/{global_id}", code="/a1", text="改", scope="global").status_code == 403
    assert [s["scope"] for s in canned(world, "wang").json()["scopes"]] == ["personal"]
    assert [s["scope"] for s in canned(world, "boss").json()["scopes"]] == ["personal", "group"]
    assert [s["scope"] for s in canned(world, "root").json()["scopes"]] == ["personal", "group", "global"]
    assert canned(world, "boss", "DELETE", f"/{group_id}").status_code == 200
    assert canned(world, "root", "DELETE", f"/{global_id}").status_code == 200


def test_replies_are_validated(world: World) -> None:
    for body in ({"code": "hi", "text": "x"}, {"code": "/a b", "text": "x"}, {"code": "/" + "x" * 32, "text": "x"},
                 {"code": "/ok", "text": "   "}, {"code": "/ok", "text": "x" * 501}, {"code": "/ok", "text": "a\x00"},
                 {"code": f"/{PHONE}", "text": "x"}):
        assert canned(world, "wang", "POST", **body).status_code == 422, body
    first = canned(world, "wang", "POST", code="/dup", text=f"请联系{PHONE}")
    assert first.status_code == 201 and first.json()["text"] == "请联系138****6688"  # stored masked
    assert canned(world, "wang", "POST", code="/dup", text="again").status_code == 409
    assert canned(world, "li", "POST", code="/dup", text="小李的").status_code == 201  # personal: per agent
    li_reply = next(r for r in canned(world, "li").json()["replies"] if r["code"] == "/dup")
    assert canned(world, "wang", "PUT", f"/{li_reply['id']}", code="/dup", text="x").status_code == 404
    assert canned(world, "wang", "PUT", f"/{first.json()['id']}", code="/dup2", text="改过").json()["code"] == "/dup2"
    assert canned(world, "wang", "DELETE", f"/{first.json()['id']}").status_code == 200
    assert canned(world, "wang", "DELETE", f"/{first.json()['id']}").status_code == 404
    canned(world, "li", "DELETE", f"/{li_reply['id']}")


def test_a_code_expands_personal_then_group_then_global_then_config(world: World) -> None:
    client = world.client
    rest(client, "expand", "借记卡被锁了")
    rest(client, "expand", "转人工")
    handoff = waiting_handoff(world, "wang")
    with world.database.session() as session:  # so 小王 (借记卡与账户) can take it
        assert session.get(Handoff, handoff["handoff_id"]).group == "借记卡与账户"
    accept(world, "wang")
    handoff_id = handoff["handoff_id"]

    default_hi = world.client.app.state.config.handoff.canned["/hi"]
    assert send(world, "wang", handoff_id, "/hi") == default_hi
    made = [canned(world, "root", "POST", code="/hi", text="全局问候", scope="global").json(),
            canned(world, "boss", "POST", code="/hi", text="信用卡组问候", scope="group", group="信用卡").json()]
    assert send(world, "wang", handoff_id, "/hi") == "全局问候"  # 信用卡 is not 小王's group
    made.append(canned(world, "boss", "POST", code="/hi", text="借记卡组问候", scope="group",
                       group="借记卡与账户").json())
    assert send(world, "wang", handoff_id, "/hi") == "借记卡组问候"
    personal = canned(world, "wang", "POST", code="/hi", text="我是小王，您好").json()
    assert send(world, "wang", handoff_id, "/hi") == "我是小王，您好"
    assert picker(world, "wang")["/hi"] == "我是小王，您好"
    assert picker(world, "li")["/hi"] == "信用卡组问候" and picker(world, "boss")["/hi"] == "全局问候"
    assert picker(world, "wang")["/bye"] == world.client.app.state.config.handoff.canned["/bye"]
    assert send(world, "wang", handoff_id, "/hi 你好") == "/hi 你好"  # only a whole message is a code

    canned(world, "wang", "DELETE", f"/{personal['id']}")
    assert send(world, "wang", handoff_id, "/hi") == "借记卡组问候"
    for reply in made:
        who = "root" if reply["scope"] == "global" else "boss"
        assert canned(world, who, "DELETE", f"/{reply['id']}").status_code == 200
    assert send(world, "wang", handoff_id, "/hi") == default_hi
