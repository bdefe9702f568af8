"""The like button in a real browser: Debian's Chromium, headless, driven by Playwright,
against the API on real PostgreSQL and Redis. A second local origin (Python's
http.server on another port) embeds the button the way another site would.
"""
from __future__ import annotations

import functools
import http.server
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import ARTIFACTS
from tests.helpers import flags, like, like_rows, nothing_stored

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WELCOME = 'button[data-post-id="demo-welcome"]'
expect.set_options(timeout=5000)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser):
    """Each call opens a page in a new browser context: empty localStorage, a new anonymous visitor."""
    contexts, errors = [], []

    def make():
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(error))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


class Site:
    """A static site on its own 127.0.0.1 port: an origin other than the API's."""

    def __init__(self, root: Path):
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, name: str, api_base: str, post_ids: list[str]) -> str:
        buttons = "\n".join(f'<p>Post {p} <button data-post-id="{p}">Like</button></p>' for p in post_ids)
        (self.root / name).write_text(
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{name}</title>\n'
            f'<script src="{api_base}/static/like-button.js" defer></script></head>\n<body>\n{buttons}\n</body></html>\n')
        return f"{self.origin}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    allowed = Site(tmp_path_factory.mktemp("allowed-site"))
    other = Site(tmp_path_factory.mktemp("other-site"))
    yield allowed, other
    allowed.close()
    other.close()


@pytest.fixture(scope="module")
def web_api(api_factory, sites):
    """The API for this module, which lets the first site (only) embed the button."""
    with api_factory(CORS_ALLOWED_ORIGINS=sites[0].origin) as proc:
        yield proc


def open_demo(page, api):
    page.goto(f"{api.base_url}/demo")
    button = page.locator(WELCOME)
    settled(button)
    return button


def settled(button) -> None:
    """Counts loaded and no request in flight."""
    expect(button).to_have_attribute("data-likes-state", "ready")


def count_of(button):
    return button.locator(".likes-count")


def shows(button, count: str, pressed: bool) -> None:
    expect(count_of(button)).to_have_text(count)
    expect(button).to_have_attribute("aria-pressed", "true" if pressed else "false")


def test_click_like_adds_one_and_presses_the_button(web_api, db, new_page):
    page = new_page()
    button = open_demo(page, web_api)
    shows(button, "0", pressed=False)
    button.click()
    shows(button, "1", pressed=True)
    expect(button).to_have_attribute("aria-label", "Like, 1 like")
    settled(button)
    assert like_rows(db, "demo-welcome") == 1
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo-after-like.png"), full_page=True)


def test_reload_still_shows_liked_because_the_id_is_in_local_storage(web_api, db, new_page):
    page = new_page()
    button = open_demo(page, web_api)
    button.click()
    settled(button)
    stored_id = page.evaluate("Object.entries(localStorage).find(([k]) => k.startsWith('likes.clientId'))[1]")
    assert stored_id.count(".") == 2
    page.reload()
    settled(button)
    shows(button, "1", pressed=True)
    # Clearing localStorage makes this browser a new anonymous client, as documented.
    page.evaluate("localStorage.clear()")
    page.reload()
    settled(button)
    shows(button, "1", pressed=False)
    button.click()
    shows(button, "2", pressed=True)
    settled(button)
    assert like_rows(db, "demo-welcome") == 2


def test_a_second_browser_adds_one_more_and_unlike_takes_one_away(web_api, db, new_page):
    first, second = new_page(), new_page()
    a = open_demo(first, web_api)
    a.click()
    settled(a)
    b = open_demo(second, web_api)
    shows(b, "1", pressed=False)
    b.click()
    shows(b, "2", pressed=True)
    settled(b)
    assert like_rows(db, "demo-welcome") == 2
    first.reload()
    settled(a)
    expect(count_of(a)).to_have_text("2")
    a.click()                                         # unlike
    shows(a, "1", pressed=False)
    settled(a)
    assert like_rows(db, "demo-welcome") == 1


def test_fast_clicks_never_count_twice(web_api, db, new_page):
    page = new_page()
    button = open_demo(page, web_api)
    button.dblclick()
    expect(count_of(button)).to_have_text("1")
    settled(button)
    assert like_rows(db, "demo-welcome") == 1
    # A new browser (no id yet) clicking five times before any answer: one client, one like.
    other = new_page()
    burst = open_demo(other, web_api)
    burst.evaluate("b => { for (let i = 0; i < 5; i++) b.click(); }")
    settled(burst)
    shows(burst, "2", pressed=True)
    assert like_rows(db, "demo-welcome") == 2


def test_a_new_browser_liking_two_posts_at_once_is_one_client(web_api, db, new_page):
    page = new_page()
    open_demo(page, web_api)
    page.evaluate("""() => ["demo-welcome", "demo-backups"].forEach(
        id => document.querySelector(`button[data-post-id="${id}"]`).click())""")
    for post_id in ("demo-welcome", "demo-backups"):
        settled(page.locator(f'button[data-post-id="{post_id}"]'))
    page.reload()
    for post_id in ("demo-welcome", "demo-backups"):
        button = page.locator(f'button[data-post-id="{post_id}"]')
        settled(button)
        expect(button).to_have_attribute("aria-pressed", "true")   # both likes belong to the stored id
        assert like_rows(db, post_id) == 1


def test_a_stored_id_the_server_no_longer_accepts_is_replaced(web_api, db, new_page):
    # e.g. signed with a secret retired after a rotation's grace period
    page = new_page()
    stale = "deadbeef." + "A" * 22 + "." + "A" * 22
    page.add_init_script(f"localStorage.setItem('likes.clientId:{web_api.base_url}/', '{stale}')")
    button = open_demo(page, web_api)
    assert page.evaluate(f"localStorage.getItem('likes.clientId:{web_api.base_url}/')") is None
    button.click()
    expect(button).to_have_attribute("aria-pressed", "true")
    settled(button)
    fresh = page.evaluate(f"localStorage.getItem('likes.clientId:{web_api.base_url}/')")
    assert fresh and fresh != stale
    assert like_rows(db, "demo-welcome") == 1


def test_keyboard_likes_with_a_visible_focus_and_a_label_with_the_count(web_api, db, new_page):
    page = new_page()
    button = open_demo(page, web_api)
    for _ in range(10):
        page.keyboard.press("Tab")
        if button.evaluate("b => b === document.activeElement"):
            break
    else:
        pytest.fail("the like button never got the keyboard focus")
    outline = button.evaluate("b => [getComputedStyle(b).outlineStyle, parseFloat(getComputedStyle(b).outlineWidth)]")
    assert outline[0] != "none" and outline[1] >= 2, outline
    page.keyboard.press("Space")
    expect(button).to_have_attribute("aria-pressed", "true")
    expect(button).to_have_attribute("aria-label", "Like, 1 like")
    settled(button)
    page.keyboard.press("Enter")
    expect(button).to_have_attribute("aria-pressed", "false")
    expect(button).to_have_attribute("aria-label", "Like, 0 likes")
    settled(button)
    assert like_rows(db, "demo-welcome") == 0
    assert button.evaluate("b => b.tagName") == "BUTTON"


def test_a_rate_limited_click_shows_a_message_and_waits_for_retry_after(api_factory, db, new_page):
    with api_factory(RATE_LIMIT_MAX_REQUESTS="2", RATE_LIMIT_WINDOW_MS="3000") as api:
        page = new_page()
        button = open_demo(page, api)
        for expected in ("1", "0"):
            button.click()
            expect(count_of(button)).to_have_text(expected)
            settled(button)
        with page.expect_response(lambda r: r.url.endswith("/api/posts/like")) as refused:
            button.click()
        assert refused.value.status == 429
        retry_after = int(refused.value.headers["retry-after"])
        limited_at = time.monotonic()
        expect(page.locator(".likes-message").first).to_contain_text("Too many likes")
        expect(button).to_have_attribute("aria-disabled", "true")
        shows(button, "0", pressed=False)                       # reverted
        button.evaluate("b => b.click()")                       # ignored while disabled: nothing is sent
        expect(button).to_have_attribute("aria-disabled", "false", timeout=(retry_after + 3) * 1000)
        assert time.monotonic() - limited_at >= retry_after - 0.5
        expect(page.locator(".likes-message").first).to_have_text("")
        assert like_rows(db, "demo-welcome") == 0


def test_with_the_kill_switch_on_the_button_is_read_only_and_counts_still_show(pg, api_factory, db, new_page):
    with api_factory(CACHE_TTL_SECONDS="1") as api, api.client() as client:
        like(client, "demo-welcome")
        page = new_page()
        button = open_demo(page, api)
        flags(pg, "kill")
        try:
            button.click()
            expect(page.locator(".likes-message").first).to_contain_text("paused")
            expect(button).to_have_attribute("data-likes-state", "read-only")
            expect(button).to_have_attribute("aria-disabled", "true")
            shows(button, "1", pressed=False)
            others = page.locator("button[data-post-id]:not([data-post-id='demo-welcome'])")
            for i in range(others.count()):
                expect(others.nth(i)).to_have_attribute("aria-disabled", "true")
            # A page opened now is read-only from the start, once the counts' cache
            # lifetime (1 s here) has passed.
            fresh = new_page()
            deadline = time.monotonic() + 5
            while True:
                fresh.goto(f"{api.base_url}/demo")
                state = fresh.locator(WELCOME)
                expect(state).not_to_have_attribute("data-likes-state", "loading")
                if state.get_attribute("data-likes-state") == "read-only" or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            expect(state).to_have_attribute("data-likes-state", "read-only")
            expect(count_of(state)).to_have_text("1")
            expect(state).to_have_attribute("aria-label", "Like, 1 like, liking is paused")
        finally:
            flags(pg, "restore")
        assert like_rows(db, "demo-welcome") == 1


def test_when_the_network_fails_the_count_stays_and_a_retry_is_offered(api_factory, db, new_page):
    with api_factory() as api:
        page = new_page()
        button = open_demo(page, api)
        button.click()
        expect(count_of(button)).to_have_text("1")
        settled(button)
        api.stop()
        button.click()                                           # unlike, with the API gone
        message = page.locator(".likes-message").first
        expect(message).to_contain_text("Couldn't reach the server")
        shows(button, "1", pressed=True)
        api.start()
        message.get_by_role("button", name="Retry").click()
        shows(button, "0", pressed=False)
        settled(button)
        expect(button).to_be_focused()
        assert like_rows(db, "demo-welcome") == 0


def test_an_allowed_origin_embeds_the_button(web_api, sites, db, new_page):
    allowed, _ = sites
    url = allowed.publish("post.html", web_api.base_url, ["blog-1", "blog-2"])
    with web_api.client() as client:
        like(client, "blog-2")
    page = new_page()
    page.goto(url)
    first, second = page.locator('button[data-post-id="blog-1"]'), page.locator('button[data-post-id="blog-2"]')
    settled(first)
    expect(count_of(second)).to_have_text("1")
    first.click()
    expect(count_of(first)).to_have_text("1")
    settled(first)
    assert like_rows(db, "blog-1") == 1
    page.reload()
    settled(first)
    expect(first).to_have_attribute("aria-pressed", "true")       # the id lives in this site's localStorage


def test_an_origin_that_is_not_allowed_is_blocked(web_api, sites, db, new_page):
    _, other = sites
    url = other.publish("post.html", web_api.base_url, ["blog-1"])
    page = new_page()
    page.goto(url)
    button = page.locator('button[data-post-id="blog-1"]')
    expect(page.locator(".likes-message")).to_contain_text("Couldn't reach the server")
    expect(button).to_have_attribute("aria-disabled", "true")
    button.evaluate("b => b.click()")
    # What a hostile page could try by hand: the preflight is refused, the POST never sent.
    sent = page.evaluate("""base => fetch(base + "/api/posts/like", {method: "POST",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify({postId: "blog-1", op: "like"})})
        .then(() => "sent", () => "blocked")""", web_api.base_url)
    assert sent == "blocked"
    assert nothing_stored(db)


def test_150_posts_load_their_counts_in_two_batches_and_later_buttons_too(web_api, sites, db, new_page):
    allowed, _ = sites
    ids = [f"feed-{i}" for i in range(150)]
    url = allowed.publish("feed.html", web_api.base_url, ids)
    with web_api.client() as client:
        like(client, "feed-149")
        like(client, "feed-late")
    page = new_page()
    batches = []
    page.on("request", lambda r: batches.append(r.url) if "/api/posts/like/counts" in r.url else None)
    page.goto(url)
    last = page.locator('button[data-post-id="feed-149"]')
    settled(last)
    expect(count_of(last)).to_have_text("1")
    expect(page.locator('[data-likes-state="ready"]')).to_have_count(150)
    assert len(batches) == 2
    # A feed that loads more posts later: the new button gets its count too.
    page.evaluate("""() => { const b = document.createElement("button");
        b.dataset.postId = "feed-late"; b.textContent = "Like"; document.body.append(b); }""")
    late = page.locator('button[data-post-id="feed-late"]')
    settled(late)
    expect(count_of(late)).to_have_text("1")
    assert len(batches) == 3
