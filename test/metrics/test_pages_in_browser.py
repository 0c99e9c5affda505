"""The demo and listening-test pages in headless Chromium, from file:// as a listener would open a
copied folder: every player loads its audio, every spectrogram decodes, and a whole MOS session
(refused while unrated, then downloaded) gives a results file mos_aggregate accepts."""
import json
import shutil
import time
from pathlib import Path

import pytest

from sepalm_espnet.metrics.demo_page import DemoOptions, make_demo
from sepalm_espnet.metrics.listening_test import HIDDEN_REFERENCE, LOW_ANCHOR, MosOptions, aggregate, make_mos
from test_demo_page import SEPALM, SEPFORMER, data_options, make_tiny_recipe

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (tools/install.sh)")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

WAIT_S = 10.0


def _browser(download_dir: Path):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("chromium / chromedriver not found (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1200,900", "--mute-audio"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False,
                                              "download.directory_upgrade": True})
    try:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    except WebDriverException as exc:
        pytest.skip(f"headless Chromium does not start here: {exc.msg}")
    driver.set_script_timeout(WAIT_S + 5)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    recipe = make_tiny_recipe(root)
    index = make_demo(DemoOptions(**data_options(recipe), outdir=str(root / "exp/demo")))
    pages = make_mos(MosOptions(**data_options(recipe), outdir=str(root / "exp/mos"), num_utterances=3, seed=0))
    downloads = root / "downloads"
    downloads.mkdir()
    driver = _browser(downloads)
    yield root, index, pages, downloads, driver
    driver.quit()


# Resolves once every <audio> has loaded its metadata (or failed): [src, readyState, duration, error].
AUDIO_STATES = """
var done = arguments[arguments.length - 1];
var audios = Array.from(document.querySelectorAll('audio'));
audios.forEach(function (a) { a.preload = 'auto'; a.load(); });
var deadline = Date.now() + %d;
(function poll() {
  var states = audios.map(function (a) {
    return [a.getAttribute('src'), a.readyState, a.duration, a.error ? a.error.code : null]; });
  var pending = states.some(function (s) { return s[1] < 1 && s[3] === null; });
  if (pending && Date.now() < deadline) { setTimeout(poll, 50); } else { done(states); }
})();
""" % int(WAIT_S * 1000)


def _check_media(driver, expected_audio: int):
    states = driver.execute_async_script(AUDIO_STATES)
    assert len(states) == expected_audio
    bad = [s for s in states if s[1] < 1 or s[3] is not None or not abs(s[2] - 0.5) < 0.01]
    assert not bad, f"audio that did not load (src, readyState, duration, error): {bad[:5]}"
    images = driver.execute_script(
        "return Array.from(document.images).map(function (i) { return [i.getAttribute('src'), i.complete, i.naturalWidth]; });")
    return states, images


def test_demo_page_loads_every_player_and_image(site):
    root, index, _, _, driver = site
    driver.get(index.as_uri())
    assert driver.title == "SepALM demo"
    states, images = _check_media(driver, expected_audio=21)
    assert len(images) == 21 and all(complete and width > 0 for _, complete, width in images), images
    rows = driver.find_elements(By.CSS_SELECTOR, "table.audio tr[data-system]")
    assert {r.get_attribute("data-system") for r in rows} >= {"mixture", "reference", SEPFORMER, SEPALM}
    assert driver.find_element(By.CSS_SELECTOR, "ul.unavailable").text.startswith("Synthesizer only: not available")
    driver.save_screenshot(str(root / "demo.png"))
    assert (root / "demo.png").stat().st_size > 10_000


def _wait_for_file(directory: Path, pattern: str) -> Path:
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        found = [p for p in directory.glob(pattern) if not p.name.endswith(".crdownload")]
        if found:
            time.sleep(0.1)
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {pattern} downloaded into {directory}: {sorted(p.name for p in directory.iterdir())}")


@pytest.mark.parametrize("test", ["nmos", "smos"])
def test_mos_session(site, test):
    root, _, pages, downloads, driver = site
    driver.get(pages[test].as_uri())
    items = driver.execute_script("return ITEMS;")
    assert len(items) == 3 * 4
    listener = "listener <7>"
    message = driver.find_element(By.ID, "message")
    driver.find_element(By.ID, "start").click()
    assert "listener id" in message.text  # no id yet: nothing shown
    driver.find_element(By.ID, "listener").send_keys(listener)
    driver.find_element(By.ID, "start").click()
    per_item = 2 if test == "smos" else 1
    _check_media(driver, expected_audio=len(items) * per_item)
    body = driver.find_element(By.TAG_NAME, "body").text
    for name in (SEPFORMER, SEPALM, HIDDEN_REFERENCE, LOW_ANCHOR):
        assert name not in body

    submit = driver.find_element(By.ID, "submit")
    submit.click()
    assert message.text.startswith(f"Not submitted: {len(items)} recording(s) are not rated yet")
    radios = driver.find_elements(By.CSS_SELECTOR, "input[type=radio]")
    assert len(radios) == 5 * len(items)
    # Rate all but the last by real clicks (score 1 + position mod 5); the refusal must name the last.
    scores = {}
    shown = driver.execute_script("return shownOrder;")
    for position, item_id in enumerate(shown):
        score = 1 + position % 5
        scores[item_id] = score
        if position < len(shown) - 1:
            driver.find_element(By.CSS_SELECTOR, f'input[name="score-{item_id}"][value="{score}"]').click()
    submit.click()
    assert message.text.startswith(f"Not submitted: 1 recording(s) are not rated yet (number {len(shown)})")
    assert not list(downloads.glob(f"{test}_*.json"))
    driver.execute_script("document.getElementById('message').scrollIntoView(false);")
    driver.save_screenshot(str(root / f"{test}_refused.png"))
    driver.find_element(By.CSS_SELECTOR, f'input[name="score-{shown[-1]}"][value="{scores[shown[-1]]}"]').click()
    submit.click()
    path = _wait_for_file(downloads, f"{test}_*.json")
    assert path.name == f"{test}_listener__7_.json" and message.text.startswith("Thank you!")
    driver.execute_script("document.getElementById('message').scrollIntoView(false);")
    driver.save_screenshot(str(root / f"{test}.png"))

    result = json.loads(path.read_text())
    assert result["test"] == test and result["listener"] == listener and "Chrome" in result["user_agent"]
    assert result["order"] == shown and sorted(shown) == sorted(item["id"] for item in items)
    assert {r["item"]: r["score"] for r in result["ratings"]} == scores
    by_id = {item["id"]: item for item in items}
    assert all((r["system"], r["key"]) == (by_id[r["item"]]["system"], by_id[r["item"]]["key"])
               for r in result["ratings"])
    # The order is a function of the listener id: the same id again gives it, another one does not.
    assert driver.execute_script("return shuffledIds(arguments[0]);", listener) == shown
    assert driver.execute_script("return shuffledIds('someone else');") != shown
    scores_out, _ = aggregate([path])
    assert {s.system for s in scores_out} == {HIDDEN_REFERENCE, LOW_ANCHOR, SEPFORMER, SEPALM}
    assert sum(s.n_ratings for s in scores_out) == len(items) and all(s.n_listeners == 1 for s in scores_out)
