/*! like-button.js: the likes platform's embeddable like button. No dependencies, no build step.
 *
 *   <script src="https://likes.example.com/static/like-button.js" defer></script>
 *   <button data-post-id="post-1">Like</button>
 *
 * The API is found from this script's own URL (the part before /static/), or from
 * data-api-base="https://…" on the script tag. Buttons added later are picked up too.
 * Identity: the clientId the API issues on the first like is kept in localStorage and
 * sent with every request; clearing the site's data makes the browser a new anonymous client.
 */
(function () {
  "use strict";

  var script = document.currentScript || document.querySelector("script[src*='like-button']");
  if (!script || window.__likeButtons) return;          // loaded twice: the first copy does the work
  window.__likeButtons = true;

  var API = new URL(script.getAttribute("data-api-base") || "..", script.src);
  if (!/\/$/.test(API.pathname)) API = new URL(API.href + "/");
  var BATCH = 100;              // the counts endpoint's limit (MAX_BATCH_POST_IDS in api/models.py)
  var TIMEOUT_MS = 10000;
  var POST_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
  var STORAGE_KEY = "likes.clientId:" + API.origin + API.pathname;
  var SELECTOR = "button[data-post-id]";

  var posts = new Map();        // postId -> state shared by every button of that post
  var messages = new WeakMap(); // button -> its message element
  var readOnly = false;         // likes are switched off (kill switch)
  var blockedUntil = 0;         // rate-limited until this time (ms)
  var writes = Promise.resolve();   // likes go one at a time, so a new browser gets one id
  var memoryId = null;          // when localStorage is unavailable

  // ---- identity -------------------------------------------------------------------------

  function clientId() {
    try { return window.localStorage.getItem(STORAGE_KEY) || memoryId; } catch (e) { return memoryId; }
  }

  function keepClientId(id) {
    memoryId = id;
    try { window.localStorage.setItem(STORAGE_KEY, id); } catch (e) { /* private mode: memory only */ }
  }

  function forgetClientId() {
    memoryId = null;
    try { window.localStorage.removeItem(STORAGE_KEY); } catch (e) { /* nothing stored */ }
  }

  // ---- HTTP -----------------------------------------------------------------------------

  // Resolves to {status, code, body, retryAfter}; rejects only when the network fails.
  function request(path, options) {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, TIMEOUT_MS);
    options.signal = controller.signal;
    options.credentials = "omit";   // identity is the stored id, never a cookie
    return fetch(new URL(path, API), options).then(function (res) {
      return res.json().catch(function () { return null; }).then(function (body) {
        return {
          status: res.status,
          body: body,
          code: body && body.error ? body.error.code : null,
          retryAfter: Math.max(1, parseInt(res.headers.get("Retry-After"), 10) || 60)
        };
      });
    }).finally(function () { clearTimeout(timer); });
  }

  function fetchCounts(ids) {
    var url = new URL("api/posts/like/counts", API);
    ids.forEach(function (id) { url.searchParams.append("postId", id); });
    var id = clientId();
    return request(url, { headers: id ? { "X-Client-Id": id } : {} });
  }

  function sendLike(postId, op) {
    var run = function () {
      var body = { postId: postId, op: op };
      var id = clientId();
      if (id) body.clientId = id;
      return request("api/posts/like", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body)
      });
    };
    var result = writes.then(run, run);
    writes = result.catch(function () {});
    return result;
  }

  // ---- state ----------------------------------------------------------------------------

  function state(id) {
    var p = posts.get(id);
    if (!p) {
      p = { id: id, count: null, liked: false, want: false, busy: false, loading: false, message: null };
      posts.set(id, p);
    }
    return p;
  }

  function setMessage(p, text, retry) {
    p.message = text ? { text: text, retry: retry || null } : null;
  }

  function loadCounts(ids, retried) {
    ids.forEach(function (id) { state(id).loading = true; });
    var chunks = [];
    for (var i = 0; i < ids.length; i += BATCH) chunks.push(ids.slice(i, i + BATCH));
    chunks.forEach(function (chunk) {
      var retry = function () { loadCounts(chunk); };
      fetchCounts(chunk).then(function (res) {
        if (res.status === 400 && res.code === "invalid_client_id" && !retried) {
          forgetClientId();                       // signed with a retired secret: start afresh
          return loadCounts(chunk, true);
        }
        chunk.forEach(function (id) {
          var p = state(id);
          p.loading = false;
          if (res.status === 200) {
            p.count = res.body.counts[id];
            if (!p.busy) p.liked = p.want = !!(res.body.liked && res.body.liked[id]);
            setMessage(p, null);
          } else if (res.status === 429) {
            setMessage(p, "Too many requests. Retrying in " + res.retryAfter + " s.");
          } else if (p.count === null) {
            setMessage(p, "Couldn't load likes.", retry);
          }
        });
        if (res.status === 200 && typeof res.body.readOnly === "boolean") readOnly = res.body.readOnly;
        if (res.status === 429) setTimeout(retry, res.retryAfter * 1000);
        renderAll();
      }, function () {
        chunk.forEach(function (id) {
          var p = state(id);
          p.loading = false;
          setMessage(p, "Couldn't reach the server.", retry);
        });
        renderAll();
      });
    });
  }

  function blocked(p) {
    return p.count === null || readOnly || Date.now() < blockedUntil;
  }

  function toggle(p) {
    if (blocked(p)) return;
    p.want = !p.want;
    setMessage(p, null);
    render(p);
    sync(p);
  }

  // Sends likes and unlikes until the server agrees with what the user last chose; clicks
  // that arrive meanwhile only change the choice, so fast clicks never count twice.
  function sync(p) {
    if (p.busy) return;
    p.busy = true;
    render(p);
    var retriedId = false;
    var step = function () {
      if (p.want === p.liked) return done();
      if (readOnly || Date.now() < blockedUntil) {   // refused meanwhile for another post
        p.want = p.liked;
        return done();
      }
      var op = p.want ? "like" : "unlike";
      var retry = function () { p.want = op === "like"; setMessage(p, null); render(p); sync(p); };
      return sendLike(p.id, op).then(function (res) {
        if (res.status === 200) {
          if (res.body.clientId) keepClientId(res.body.clientId);
          p.liked = res.body.liked;
          p.count = res.body.count;
          return step();
        }
        if (res.status === 400 && res.code === "invalid_client_id" && !retriedId) {
          retriedId = true;
          forgetClientId();
          return step();
        }
        p.want = p.liked;                         // the server said no: show what is true
        if (res.status === 429) {
          blockedUntil = Date.now() + res.retryAfter * 1000;
          setMessage(p, "Too many likes. Try again in " + res.retryAfter + " s.");
          setTimeout(function () { if (p.message && !p.message.retry) setMessage(p, null); renderAll(); },
                     res.retryAfter * 1000 + 50);
        } else if (res.status === 503 && res.code === "likes_disabled") {
          readOnly = true;
          setMessage(p, "Liking is paused for now; counts still show.");
        } else {
          setMessage(p, "Couldn't save your like.", retry);
        }
        return done();
      }, function () {
        p.want = p.liked;
        setMessage(p, "Couldn't reach the server.", retry);
        return done();
      });
    };
    var done = function () { p.busy = false; renderAll(); };
    step();
  }

  // ---- DOM ------------------------------------------------------------------------------

  function label(p, shown) {
    if (shown === null) return "Like, loading the count";
    var text = "Like, " + shown + (shown === 1 ? " like" : " likes");
    if (readOnly) text += ", liking is paused";
    return text;
  }

  function render(p) {
    var shown = p.count === null ? null : p.count + (p.want ? 1 : 0) - (p.liked ? 1 : 0);
    var disabled = blocked(p);
    var status = p.count === null ? "loading" : readOnly ? "read-only"
      : Date.now() < blockedUntil ? "rate-limited" : p.busy ? "saving" : "ready";
    document.querySelectorAll(SELECTOR).forEach(function (button) {
      if (button.getAttribute("data-post-id") !== p.id || !messages.has(button)) return;
      button.setAttribute("aria-pressed", String(p.want));
      button.setAttribute("aria-disabled", String(disabled));
      button.setAttribute("aria-busy", String(p.busy || p.loading));
      button.setAttribute("aria-label", label(p, shown));
      button.setAttribute("data-likes-state", status);
      if (readOnly) button.title = "Liking is paused for now";
      else button.removeAttribute("title");
      var count = button.querySelector(".likes-count");
      var countText = shown === null ? "…" : shown.toLocaleString();
      if (count.textContent !== countText) count.textContent = countText;
      showMessage(button, messages.get(button), p.message);
    });
  }

  function showMessage(button, box, message) {
    if (box.shown === message) return;
    box.shown = message;
    box.textContent = message ? message.text : "";
    if (message && message.retry) {
      var again = document.createElement("button");
      again.type = "button";
      again.className = "likes-retry";
      again.textContent = "Retry";
      again.addEventListener("click", function () {
        button.focus();                       // the Retry button is about to go away
        message.retry();
      });
      box.append(" ", again);
    }
  }

  function renderAll() {
    posts.forEach(render);
  }

  function setUp(button) {
    var id = button.getAttribute("data-post-id");
    if (!POST_ID.test(id)) {
      console.warn("like-button: data-post-id must be 1-128 characters from A-Z a-z 0-9 _ . : -, got", id);
      return false;
    }
    var text = button.textContent.trim() || "Like";
    button.type = "button";
    button.classList.add("likes-button");
    button.textContent = "";
    var icon = document.createElement("span");
    icon.className = "likes-icon";
    icon.setAttribute("aria-hidden", "true");
    icon.textContent = "♥";
    var name = document.createElement("span");
    name.className = "likes-text";
    name.textContent = text;
    var count = document.createElement("span");
    count.className = "likes-count";
    button.append(icon, name, count);
    var box = document.createElement("span");
    box.className = "likes-message";
    box.setAttribute("role", "status");
    button.after(box);
    messages.set(button, box);
    button.addEventListener("click", function (event) {
      if (event.detail > 1) return;           // the second click of a double-click is not a toggle
      toggle(state(id));
    });
    return true;
  }

  function scan() {
    var fresh = [];
    document.querySelectorAll(SELECTOR).forEach(function (button) {
      if (messages.has(button) || !setUp(button)) return;
      var p = state(button.getAttribute("data-post-id"));
      if (p.count === null && !p.loading && fresh.indexOf(p.id) < 0) fresh.push(p.id);
    });
    if (fresh.length) loadCounts(fresh);
    renderAll();
  }

  function addStyles() {
    var style = document.createElement("style");
    style.textContent = [
      ".likes-button{display:inline-flex;align-items:center;gap:.4em;font:inherit;line-height:1.2;",
      "padding:.35em .8em;border:1px solid #8a8a8a;border-radius:999px;background:#fff;color:#222;cursor:pointer}",
      ".likes-button[aria-pressed=true]{background:#ffe3ea;border-color:#c2255c;color:#a61e4d}",
      ".likes-icon{color:#868e96}",
      ".likes-button[aria-pressed=true] .likes-icon{color:#e03131}",
      ".likes-button[aria-disabled=true]{cursor:not-allowed;opacity:.65}",
      ".likes-button:focus-visible,.likes-retry:focus-visible{outline:3px solid #1971c2;outline-offset:2px}",
      ".likes-count{font-variant-numeric:tabular-nums}",
      ".likes-message{margin-left:.6em;font-size:.875em;color:#555}",
      ".likes-retry{font:inherit;padding:.1em .6em;border:1px solid #8a8a8a;border-radius:.3em;",
      "background:#fff;cursor:pointer}"
    ].join("");
    document.head.appendChild(style);
  }

  function start() {
    addStyles();
    scan();
    var pending = false;
    new MutationObserver(function (records) {
      if (pending || !records.some(addsButtons)) return;
      pending = true;
      setTimeout(function () { pending = false; scan(); }, 0);
    }).observe(document.documentElement, { childList: true, subtree: true });
  }

  function addsButtons(record) {
    for (var i = 0; i < record.addedNodes.length; i++) {
      var node = record.addedNodes[i];
      if (node.nodeType === 1 && (node.matches(SELECTOR) || node.querySelector(SELECTOR))) return true;
    }
    return false;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
