"""The chat page served by `tandem serve` at /, in headless Chromium (Debian's chromium and
chromium-driver, selenium from PyPI): send, stream, stop, reload, the API key, and the
Markdown renderer's escaping. Screenshots go to $TANDEM_ARTIFACTS.

A missing browser fails the test; TANDEM_ALLOW_NO_BROWSER=1 turns that into a skip."""
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from conftest import Server, real_model_path  # noqa: E402  (tests/serve's server fixture)

ARTIFACTS = Path(os.environ.get("TANDEM_ARTIFACTS", "/tmp/tandem-webui-artifacts"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def browser():
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        message = f"chromium ({CHROMIUM}) or chromedriver ({DRIVER}) missing: bash tools/setup.sh installs them"
        if os.environ.get("TANDEM_ALLOW_NO_BROWSER") == "1":
            pytest.skip("SKIPPED LOUDLY: " + message)
        pytest.fail(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-first-run"):
        options.add_argument(arg)
    # The Debian driver, given by path: selenium's own driver download cannot work offline.
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)


def metric(server, name):
    for family in text_string_to_metric_families(httpx.get(server.base + "/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not in /metrics")


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def shot(driver, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


@pytest.fixture(scope="module")
def server():
    s = Server(real_model_path(), "-np", "2", "-c", "8192", "--alias", "qwen2.5-coder-0.5b")
    yield s
    assert s.stop() == 0


@pytest.fixture
def driver():
    d = browser()
    yield d
    d.quit()


def replies(driver):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, ".message.assistant")


def send(driver, text):
    from selenium.webdriver.common.by import By
    box = driver.find_element(By.ID, "input")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "send").click()


def test_page_is_embedded_and_kept_to_its_server(server):
    page = httpx.get(server.base + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/chat.js", "/chat.css", "/markdown.js"):
        r = httpx.get(server.base + asset)
        assert r.status_code == 200 and len(r.text) > 500, asset
        assert not re.search(r"(https?:)?//[\w-]+\.[\w.-]+", r.text), f"{asset} must not reach for another origin"


def test_streamed_timings_agree_with_usage(server):
    """The page's speeds come from llama-server's `timings` object on the finishing chunk."""
    body = {"messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 16, "stream": True,
            "stream_options": {"include_usage": True}}
    timings, usage = None, None
    with httpx.stream("POST", server.base + "/v1/chat/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["finish_reason"]:
                timings = chunk["timings"]
            usage = chunk.get("usage") or usage
    assert timings and usage
    assert timings["predicted_n"] == usage["completion_tokens"] > 0
    assert timings["prompt_n"] + timings["cache_n"] == usage["prompt_tokens"]
    assert timings["cache_n"] == usage["prompt_tokens_details"]["cached_tokens"]
    for n, ms, per_s in (("prompt_n", "prompt_ms", "prompt_per_second"),
                         ("predicted_n", "predicted_ms", "predicted_per_second")):
        assert timings[ms] > 0 and abs(timings[per_s] - timings[n] / timings[ms] * 1e3) < 1e-6 * timings[per_s]


def test_send_stream_stop_reload(server, driver):
    from selenium.webdriver.common.by import By

    driver.get(server.base + "/")
    wait_for(lambda: driver.find_element(By.ID, "model-name").text == "qwen2.5-coder-0.5b", 30, "the model's name")
    # Greedy, so the reply is the server's own greedy answer.
    temp = driver.find_element(By.ID, "set-temperature")
    driver.execute_script("arguments[0].value = '0'; arguments[0].dispatchEvent(new Event('change'))", temp)
    send(driver, "Write a Python function that adds two numbers, in a code block.")
    stats = wait_for(lambda: replies(driver) and replies(driver)[0].find_element(By.CLASS_NAME, "stats").text,
                     180, "the first reply's speed line")
    reply = replies(driver)[0]
    assert re.fullmatch(r"prompt \d+ tokens \(\d+ cached\) · \d+\.\d tok/s · reply \d+ tokens · \d+\.\d tok/s", stats), stats
    assert reply.find_elements(By.CSS_SELECTOR, ".content pre code"), "the code block is rendered as one"
    shot(driver, "chat-reply.png")
    # The page showed what the API answers for the same request.
    api = httpx.post(server.base + "/v1/chat/completions", timeout=180, json={
        "messages": [{"role": "user", "content": "Write a Python function that adds two numbers, in a code block."}],
        "temperature": 0, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "max_tokens": 1024}).json()
    code = reply.find_element(By.CSS_SELECTOR, ".content pre code").text
    assert code.strip() and code.strip() in api["choices"][0]["message"]["content"]
    assert api["timings"]["predicted_n"] == api["usage"]["completion_tokens"]

    # A long reply, stopped while it streams: the server cancels it and frees the slot.
    max_tokens = driver.find_element(By.ID, "set-max_tokens")
    driver.execute_script("arguments[0].value = '2000'; arguments[0].dispatchEvent(new Event('change'))", max_tokens)
    send(driver, "Count from 1 to 500, one number per line.")
    wait_for(lambda: len(replies(driver)) == 2 and len(replies(driver)[1].find_element(By.CLASS_NAME, "content").text) > 20,
             120, "the second reply to stream")
    assert metric(server, "tandem_requests_running") == 1
    driver.find_element(By.ID, "stop").click()
    wait_for(lambda: driver.find_element(By.ID, "send").is_displayed(), 10, "the send button back")
    assert "stopped" in replies(driver)[1].find_element(By.CLASS_NAME, "stats").text
    wait_for(lambda: metric(server, "tandem_requests_running") == 0, 10, "the slot to be freed")
    generated = metric(server, "tandem_generated_tokens_total")
    time.sleep(1.0)
    assert metric(server, "tandem_generated_tokens_total") == generated, "nothing is generated after stop"
    assert httpx.get(server.base + "/health").status_code == 200
    shot(driver, "chat-stopped.png")

    # Reload: the conversation is still there, in the list and on screen.
    stopped_text = replies(driver)[1].find_element(By.CLASS_NAME, "content").text
    driver.refresh()
    wait_for(lambda: len(replies(driver)) == 2, 10, "the conversation after reload")
    titles = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#conversations li")]
    assert any(t.startswith("Write a Python function") for t in titles), titles
    assert replies(driver)[1].find_element(By.CLASS_NAME, "content").text == stopped_text
    # A new chat, then back to the first one by its entry in the list.
    driver.find_element(By.ID, "new-chat").click()
    assert len(replies(driver)) == 0
    driver.find_elements(By.CSS_SELECTOR, "#conversations li")[1].click()
    assert len(replies(driver)) == 2
    shot(driver, "chat-reloaded.png")


# A Qwen3-style template whose generation prompt opens <think> unless thinking is off, so
# the small real model's reply arrives as reasoning_content.
THINK_TEMPLATE = """{%- for m in messages %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}{%- if add_generation_prompt %}<|im_start|>assistant
{% if enable_thinking is defined and enable_thinking is false %}<think>

</think>

{% else %}<think>
{% endif %}{%- endif %}"""


def test_reasoning_is_collapsed_apart_from_the_answer(driver, tmp_path):
    from selenium.webdriver.common.by import By

    template = tmp_path / "think.jinja"
    template.write_text(THINK_TEMPLATE)
    s = Server(real_model_path(), "-np", "1", "-c", "2048", "--alias", "thinker", "--template", str(template))
    try:
        driver.get(s.base + "/")
        wait_for(lambda: driver.find_element(By.ID, "model-name").text == "thinker", 30, "the model's name")
        for name, value in (("temperature", "0"), ("max_tokens", "40")):
            el = driver.find_element(By.ID, "set-" + name)
            driver.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('change'))",
                                  el, value)
        send(driver, "What is 2+2?")
        wait_for(lambda: replies(driver) and replies(driver)[0].find_element(By.CLASS_NAME, "stats").text, 120,
                 "the reply")
        details = replies(driver)[0].find_element(By.CLASS_NAME, "reasoning")
        assert details.is_displayed() and details.get_attribute("open") is None, "reasoning shown, collapsed"
        shown = details.find_element(By.TAG_NAME, "div").get_attribute("textContent")
        api = httpx.post(s.base + "/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": "What is 2+2?"}], "temperature": 0, "max_tokens": 40,
            "chat_template_kwargs": {"enable_thinking": True}}).json()["choices"][0]["message"]
        assert shown and shown == api["reasoning_content"], (shown, api)
        assert replies(driver)[0].find_element(By.CLASS_NAME, "content").text.strip() == (api["content"] or "").strip()
        details.find_element(By.TAG_NAME, "summary").click()  # opens on demand
        assert details.get_attribute("open") is not None
        shot(driver, "chat-reasoning.png")
        # Thinking off in the settings: the template closes <think> itself; an answer, no reasoning.
        driver.find_element(By.ID, "settings").find_element(By.TAG_NAME, "summary").click()
        driver.find_element(By.ID, "set-think").click()
        send(driver, "What is 3+3?")
        wait_for(lambda: len(replies(driver)) == 2 and replies(driver)[1].find_element(By.CLASS_NAME, "stats").text,
                 120, "the second reply")
        assert not replies(driver)[1].find_element(By.CLASS_NAME, "reasoning").is_displayed()
        assert replies(driver)[1].find_element(By.CLASS_NAME, "content").text.strip()
    finally:
        assert s.stop() == 0


def test_markdown_renderer_escapes_html(server, driver):
    driver.get(server.base + "/")
    html = driver.execute_script("return renderMarkdown(arguments[0])",
                                 "# T <b>\n**bold** and `<i>x</i>` [a](javascript:alert(1)) [b](https://e.org/x)\n"
                                 "<img src=x onerror=alert(1)>\n```html\n<script>alert(1)</script>\n```")
    assert "<script>" not in html and "<img" not in html and "<b>" not in html and "<i>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert '<pre><code class="language-html">&lt;script&gt;alert(1)&lt;/script&gt;</code></pre>' in html
    assert "<strong>bold</strong>" in html and "<code>&lt;i&gt;x&lt;/i&gt;</code>" in html
    assert 'href="javascript' not in html and '<a href="https://e.org/x"' in html
    assert "<h1>T &lt;b&gt;</h1>" in html


def test_api_key_is_asked_once_and_kept(driver):
    from selenium.webdriver.common.by import By

    s = Server(real_model_path(), "-np", "1", "-c", "2048", "--alias", "keyed", "--api-key", "sekrit")
    try:
        assert httpx.get(s.base + "/").status_code == 200  # the page itself is public
        assert httpx.get(s.base + "/v1/models").status_code == 401
        driver.get(s.base + "/")
        wait_for(lambda: driver.find_element(By.ID, "key-dialog").is_displayed(), 10, "the key dialog")
        driver.find_element(By.ID, "key-input").send_keys("sekrit")
        driver.find_element(By.ID, "key-save").click()
        wait_for(lambda: driver.find_element(By.ID, "model-name").text == "keyed", 10, "the model's name")
        send(driver, "Say hi.")
        wait_for(lambda: replies(driver) and replies(driver)[0].find_element(By.CLASS_NAME, "stats").text, 120,
                 "a reply through the key")
        driver.refresh()  # kept: no second question
        wait_for(lambda: driver.find_element(By.ID, "model-name").text == "keyed", 10, "the model's name again")
        assert not driver.find_element(By.ID, "key-dialog").is_displayed()
    finally:
        assert s.stop() == 0
