"""The page at / in a real headless browser (Debian's chromium driven by Playwright) against the
real server with the real models: upload the ../shared samples and see the right species first,
bad input shows the service's error, keyboard-only use works, a phone-sized screen does not
scroll sideways. Screenshots go to test-artifacts/web/."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from PIL import Image

from tests.support.env import gbif_env, service_env
from tests.support.manifests import BIRDS, INSECTS, aiy_entry, write_manifest
from tests.support.reference import samples
from tests.support.server import REPO, ServiceProcess
from tests.support.shared import HAS_SHARED, NO_SHARED, SHARED

pytestmark = [pytest.mark.shared, pytest.mark.skipif(not HAS_SHARED, reason=NO_SHARED)]

CHROMIUM = "/usr/bin/chromium"
SETUP = [str(REPO / "tests" / "support" / "debian_package.sh"), CHROMIUM, "chromium", "fonts-dejavu-core"]
GROUPS = {"birds": "bird", "insects": "insect"}  # the samples whose real models are here (no plants_V1)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    done = subprocess.run(["bash", *SETUP], capture_output=True, text=True, timeout=900)
    if done.returncode == 3:
        pytest.skip(f"no browser: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root, where chromium's sandbox refuses to start.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, artifacts, fake_gbif) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("web")
    insects = {**aiy_entry(*INSECTS), "taxonomy": str(root / "taxa.jsonl")}
    manifest = write_manifest(root / "models.toml", [aiy_entry(*BIRDS), insects])
    # The insects' taxonomy, linked against the local fake GBIF: GBIF links and the rollup.
    fake_gbif.none_names, fake_gbif.fail_names = set(), set()
    linked = subprocess.run(
        [sys.executable, "-m", "app", "link-gbif", "--model", "aiy_insects_v1", "--rate", "500",
         "--no-progress"],
        cwd=REPO, env={**os.environ, **gbif_env(manifest, fake_gbif, root / "gbif.sqlite")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert linked.returncode == 0, linked.stdout + linked.stderr
    # Private addresses refused, as in production: the page must show that error.
    env = service_env(manifest, ALLOW_PRIVATE_NETWORKS="false", INDEX_DIR=str(root / "noindex"))
    proc = ServiceProcess(env, artifacts / "web-service.log").start()
    yield proc
    proc.stop()


@pytest.fixture
def page(browser, server, artifacts, request):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.base_url + "/")
    yield page
    (artifacts / "web").mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "web" / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def identify(page, *, group: str) -> None:
    page.check(f'input[name="group"][value="{group}"]')
    page.click("#go")
    # Locators, not wait_for_function: the page's CSP forbids the eval that the latter uses.
    page.locator("#answer:not([hidden]), #error:not([hidden])").first.wait_for(timeout=60_000)


WITH_MODELS = [s for s in samples(SHARED) if s.group in GROUPS]


@pytest.mark.parametrize("sample", WITH_MODELS, ids=[s.path.stem for s in WITH_MODELS])
def test_upload_shows_the_species_first(page, sample):
    page.set_input_files("#file", str(sample.path))
    assert sample.path.name in page.inner_text("#chosen")
    identify(page, group=GROUPS[sample.group])
    assert page.is_hidden("#error"), page.inner_text("#error")
    first = page.locator("#results li").first
    assert sample.scientific_name in first.inner_text() and sample.common_name in first.inner_text()
    assert sample.common_name in page.inner_text("#verdict")
    assert page.locator("#results li").count() == 5
    assert page.evaluate("document.querySelector('#photo').naturalWidth") > 0  # the photo is shown


def test_auto_asks_every_model_and_says_which_answered(page):
    photo = SHARED / "samples" / "Micrathyria_hagenii_01.bmp"
    page.set_input_files("#file", str(photo))
    identify(page, group="auto")
    assert "Thornbush Dasher" in page.inner_text("#verdict")
    assert "aiy_insects_v1" in page.inner_text("#source")
    assert "birds:" in page.inner_text("#others")  # the other model's (less confident) answer
    page.click("#explain")
    page.wait_for_selector("#overlay:not([hidden])", timeout=60_000)
    assert page.evaluate("document.querySelector('#overlay').naturalWidth") == 512
    assert page.inner_text("#explain") == "Show the photo"


@pytest.mark.parametrize(
    ("name", "payload", "expected"),
    [
        ("notes.jpg", b"these are my field notes, not a photo", "not a photo the service can read"),
        ("huge.jpg", b"\xff\xd8\xff" + b"\0" * 4_500_000, "too large"),
        ("cut.jpg", (SHARED / "samples" / "Ara_macao_01.jpg").read_bytes()[:2000], "damaged or cut short"),
    ],
)
def test_bad_file_shows_the_error(page, name, payload, expected):
    page.set_input_files("#file", files=[{"name": name, "mimeType": "image/jpeg", "buffer": payload}])
    identify(page, group="bird")
    assert page.is_visible("#error") and page.is_hidden("#answer")
    assert expected in page.inner_text("#error")


def test_keyboard_only_and_refused_address(page):
    """Tab reaches every control in order; an address on this machine is refused, and said so."""
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.value"))
    for control in ("file", "url", "auto", "go"):
        assert control in reached, reached
    assert reached.index("file") < reached.index("url") < reached.index("auto") < reached.index("go")
    page.focus("#url")
    page.keyboard.type("http://127.0.0.1:9/photo.jpg")
    page.keyboard.press("Enter")  # submits the form
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "That address was refused." in page.inner_text("#error")


def test_phone_screen(browser, server, artifacts):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    page = context.new_page()
    page.goto(server.base_url + "/")
    page.set_input_files("#file", str(SHARED / "samples" / "Poecile_atricapillus_01.bmp"))
    identify(page, group="auto")
    assert "Black-capped Chickadee" in page.inner_text("#verdict")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing runs off the side
    (artifacts / "web").mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "web" / "phone.png"), full_page=True)
    context.close()


def test_rollup_and_gbif_links(page):
    """A red admiral and a painted lady overlaid: no species is sure, the genus is (as in
    tests/api/test_gbif_taxonomy.py); the page says so and links names to GBIF."""
    images = [
        Image.open(SHARED / "datasets" / "leedsbutterfly" / "images" / name).convert("RGB").resize((448, 448))
        for name in ("009_0003.jpg", "010_0001.jpg")
    ]
    buffer = io.BytesIO()
    Image.blend(*images, 0.5).save(buffer, "PNG")
    page.set_input_files(
        "#file", files=[{"name": "two.png", "mimeType": "image/png", "buffer": buffer.getvalue()}]
    )
    identify(page, group="insect")
    assert page.is_visible("#rollup")
    assert "it is at least genus Vanessa" in page.inner_text("#rollup")
    links = page.locator("#results a").evaluate_all("links => links.map(a => a.href)")
    assert links and all(link.startswith("https://www.gbif.org/species/") for link in links)


def test_page_headers(server):
    import httpx

    page = httpx.get(server.base_url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = httpx.get(server.base_url + "/web/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert httpx.get(server.base_url + "/web/../main.py").status_code == 404
