"""The page at / in a real headless browser (Debian's chromium driven by Playwright) against the
real server with the real models: upload the ../shared samples and see the right species first,
"Not sure" asks every model in one POST /v1/identify (several photos, where and when, the honest
"none of the models covers this"), bad input shows the service's error, keyboard-only use works, a
phone-sized screen does not scroll sideways. Screenshots go to test-artifacts/web/."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from tests.support.env import gbif_env
from tests.support.manifests import BIRDS, INSECTS, aiy_entry, with_scope, write_manifest
from tests.support.reference import leeds, samples
from tests.support.server import REPO, ServiceProcess
from tests.support.shared import HAS_SHARED, NO_SHARED, SHARED

pytestmark = [pytest.mark.shared, pytest.mark.skipif(not HAS_SHARED, reason=NO_SHARED)]

CHROMIUM = "/usr/bin/chromium"
SETUP = [str(REPO / "tests" / "support" / "debian_package.sh"), CHROMIUM, "chromium", "fonts-dejavu-core"]
GROUPS = {"birds": "bird", "insects": "insect"}  # the samples whose real models are here (no plants_V1)
LEEDS = SHARED / "datasets" / "leedsbutterfly" / "images"
ROUTES = {"/bird_url", "/insect_url", "/plant_url", "/img_url"}  # what "Not sure" asked before /v1/identify


scoped = with_scope  # what /v1/identify needs of a classifier, as volumes/models/models.toml gives it


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
    insects = {**scoped(aiy_entry(*INSECTS)), "taxonomy": str(root / "taxa.jsonl")}
    manifest = write_manifest(root / "models.toml", [scoped(aiy_entry(*BIRDS)), insects])
    # The insects' taxonomy, linked against the local fake GBIF: GBIF links and the rollup.
    fake_gbif.none_names, fake_gbif.fail_names = set(), set()
    linked = subprocess.run(
        [sys.executable, "-m", "app", "link-gbif", "--model", "aiy_insects_v1", "--rate", "500",
         "--no-progress"],
        cwd=REPO, env={**os.environ, **gbif_env(manifest, fake_gbif, root / "gbif.sqlite")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert linked.returncode == 0, linked.stdout + linked.stderr
    # Private addresses refused, as in production: the page must show that error. The geo prior
    # asks the fake GBIF too.
    env = gbif_env(
        manifest,
        fake_gbif,
        root / "gbif.sqlite",
        ALLOW_PRIVATE_NETWORKS="false",
        INDEX_DIR=str(root / "noindex"),
    )
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


def posts(page) -> list[object]:
    """The POST requests the page makes from now on (Playwright's request events)."""
    made: list[object] = []
    page.on("request", lambda request: made.append(request) if request.method == "POST" else None)
    return made


def one_identify(made: list[object]) -> object:
    """The "Not sure" answer came from exactly one POST /v1/identify, no single-model route."""
    paths = [urlsplit(r.url).path for r in made]  # type: ignore[attr-defined]
    assert paths == ["/v1/identify"], paths
    assert not ROUTES & set(paths)
    return made[0]


def identify(page, *, group: str) -> None:
    page.check(f'input[name="group"][value="{group}"]')
    page.click("#go")
    # Locators, not wait_for_function: the page's CSP forbids the eval that the latter uses.
    page.locator("#answer:not([hidden]), #error:not([hidden])").first.wait_for(timeout=60_000)


# Read at collection: without ../shared there is nothing to list (the module is skipped).
WITH_MODELS = [s for s in samples(SHARED) if s.group in GROUPS] if HAS_SHARED else []


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
    assert "the model's own probabilities" in page.inner_text("#scores")  # a classifier route's
    assert page.evaluate("document.querySelector('#photo').naturalWidth") > 0  # the photo is shown


def test_auto_asks_every_model_and_says_which_answered(page):
    photo = SHARED / "samples" / "Micrathyria_hagenii_01.bmp"
    page.set_input_files("#file", str(photo))
    made = posts(page)
    identify(page, group="auto")
    one_identify(made)
    assert page.is_hidden("#error"), page.inner_text("#error")
    assert "Thornbush Dasher" in page.inner_text("#verdict")
    assert "Answered by aiy_insects_v1 (insects)" in page.inner_text("#source")
    assert "aiy_insects_v1 fits best" in page.inner_text("#why")
    assert page.is_visible("#scores")  # says which scores these are: /v1/identify's, not the model's own
    assert "calibrated probabilities" in page.inner_text("#scores")
    assert "model's own" not in page.inner_text("body")
    lines = page.locator("#models li").all_inner_texts()  # every model's assessment, one line each
    assert len(lines) == 2, lines
    chosen = [line for line in lines if line.startswith("aiy_insects_v1: fits ")]
    assert chosen and "≥" in chosen[0] and chosen[0].endswith("— accepted (chosen)"), lines
    assert any(line.startswith("aiy_birds_v1: fits ") and "— not accepted" in line for line in lines)
    assert page.is_hidden("#geo")  # no place given, no geo line
    assert page.locator("#results a").count() > 0  # the insects' GBIF links
    page.click("#explain")
    page.wait_for_selector("#overlay:not([hidden])", timeout=60_000)
    assert page.evaluate("document.querySelector('#overlay').naturalWidth") == 512
    assert page.inner_text("#explain") == "Show the photo"


@pytest.mark.parametrize(
    ("name", "payload", "expected"),
    [
        ("notes.jpg", lambda: b"these are my field notes, not a photo", "not a photo the service can read"),
        ("huge.jpg", lambda: b"\xff\xd8\xff" + b"\0" * 4_500_000, "too large"),
        # Read when the test runs, not at collection: without ../shared the module is skipped.
        (
            "cut.jpg",
            lambda: (SHARED / "samples" / "Ara_macao_01.jpg").read_bytes()[:2000],
            "damaged or cut short",
        ),
    ],
)
def test_bad_file_shows_the_error(page, name, payload, expected):
    files = [{"name": name, "mimeType": "image/jpeg", "buffer": payload()}]
    page.set_input_files("#file", files=files)
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
    assert reached.index("auto") < reached.index("where-toggle") < reached.index("go"), reached
    page.focus("#where-toggle")
    page.keyboard.press("Enter")  # opens "Where and when"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "lat"
    page.focus("#url")
    page.keyboard.type("http://127.0.0.1:9/photo.jpg")
    made = posts(page)
    page.keyboard.press("Enter")  # submits the form
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "That address was refused." in page.inner_text("#error")
    assert "photo 1" in page.inner_text("#error")  # /v1/identify names the photo
    request = one_identify(made)
    assert parse_qs(urlsplit(request.url).query)["img_url"] == ["http://127.0.0.1:9/photo.jpg"]


def test_phone_screen(browser, server, artifacts):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    page = context.new_page()
    page.goto(server.base_url + "/")
    page.set_input_files("#file", str(SHARED / "samples" / "Poecile_atricapillus_01.bmp"))
    made = posts(page)
    identify(page, group="auto")
    one_identify(made)
    assert "Black-capped Chickadee" in page.inner_text("#verdict")
    assert "aiy_birds_v1 (birds)" in page.inner_text("#source")
    page.click("#where-toggle")  # the where-and-when inputs fit too
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


def leeds_species(number: str) -> str:
    return dict((path.name, name) for path, name in leeds(SHARED))[f"{number}_0001.jpg"]


def test_two_photos_of_one_butterfly_with_place_and_date(page, server):
    """Two Leeds photos of one small copper through the file input (a third added and removed),
    the place from "use my location", a date: one POST /v1/identify with both photos and the
    place, one answer naming the species, from the insects model, and the geo prior's line."""
    species = leeds_species("005")
    page.set_input_files("#file", [str(LEEDS / "005_0001.jpg"), str(LEEDS / "005_0002.jpg")])
    page.set_input_files("#file", str(SHARED / "samples" / "Helianthus_annuus_02.bmp"))  # adds a third
    assert page.locator("#thumbs li").count() == 3
    page.click('#thumbs button[aria-label^="Remove photo 3"]')
    assert page.locator("#thumbs li").count() == 2
    assert "2 photos: 005_0001.jpg" in page.inner_text("#chosen")
    assert "Helianthus" not in page.inner_text("#chosen")
    page.context.grant_permissions(["geolocation"], origin=server.base_url)
    page.context.set_geolocation({"latitude": 53.8067, "longitude": -1.5550})  # Leeds
    page.click("#where-toggle")
    page.click("#locate")
    page.locator("#status", has_text="Location set").wait_for(timeout=15_000)
    assert page.input_value("#lat") == "53.8067" and page.input_value("#lon") == "-1.5550"
    page.fill("#date", "2025-07-14")
    made = posts(page)
    identify(page, group="auto")
    request = one_identify(made)
    assert page.is_hidden("#error"), page.inner_text("#error")
    query = parse_qs(urlsplit(request.url).query)
    assert query == {"lat": ["53.8067"], "lon": ["-1.5550"], "date": ["2025-07-14"]}, query
    assert len(request.response().json()["photos"]) == 2  # both photos, in the one request
    assert species in page.inner_text("#verdict")
    assert species in page.locator("#results li").first.inner_text()
    assert "per photo: " in page.locator("#results li").first.inner_text()  # both photos' scores
    assert "Answered by aiy_insects_v1 (insects) from 2 photos" in page.inner_text("#source")
    assert page.is_visible("#geo")
    assert "GBIF has recorded near 53.8067, -1.5550 in July" in page.inner_text("#geo")
    assert page.locator("#strip img").count() == 1  # the second photo beside the first
    assert page.inner_text("#explain") == "Show where the model looked (photo 1)"


def test_sunflower_is_out_of_scope(page):
    """No plants model here: the sunflower fits neither model, and the page says so, naming what
    the models cover, with no species."""
    page.set_input_files("#file", str(SHARED / "samples" / "Helianthus_annuus_02.bmp"))
    made = posts(page)
    identify(page, group="auto")
    one_identify(made)
    assert page.is_hidden("#error"), page.inner_text("#error")
    expected = "None of the models here covers what this photo shows (birds, insects)."
    assert page.inner_text("#verdict") == expected
    assert page.locator("#results li").count() == 0
    assert page.is_hidden("#rollup") and page.is_hidden("#explain")
    assert "No model was chosen: none of them fits this photo." in page.inner_text("#source")
    lines = page.locator("#models li").all_inner_texts()
    assert len(lines) == 2 and all(line.endswith("— not accepted") for line in lines), lines


@pytest.mark.parametrize("reason", ["not_an_organism", "low_confidence"])
def test_the_other_reasons_in_words(page, server, reason):
    """The two reasons the samples here do not give: the real answer to two photos of different
    Vanessa species, its reason (and for low_confidence the genus rollup) set on the way back.
    (Playwright's route.fetch() drops the page's file parts, so the test asks the service itself.)"""
    import httpx

    names = ("009_0001.jpg", "010_0001.jpg")
    files = [("image", (name, (LEEDS / name).read_bytes(), "image/jpeg")) for name in names]
    real = httpx.post(server.base_url + "/v1/identify", files=files, timeout=60)
    assert real.status_code == 200, real.text

    def answer(route):
        body = real.json()
        body.update(no_match=True, no_match_reason=reason)
        if reason == "not_an_organism":
            body.update(results=[], model=None, group=None, rollup=None)
        else:
            score = sum(r["score"] for r in body["results"] if r["scientific_name"].startswith("Vanessa "))
            body["rollup"] = {"rank": "GENUS", "name": "Vanessa", "usageKey": 1234, "score": score}
            # Noise the page must not list: a 0 and a score under 1/1000 of the best.
            best = body["results"][0]
            for name, noise in (("Noise nullus", 0.0), ("Noise minimus", best["score"] / 2000)):
                body["results"].append({**best, "scientific_name": name, "common_name": None, "score": noise})
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route("**/v1/identify*", answer)
    page.set_input_files("#file", [str(LEEDS / name) for name in names])
    made = posts(page)
    identify(page, group="auto")
    one_identify(made)
    verdict = page.inner_text("#verdict")
    if reason == "not_an_organism":
        assert verdict == "These do not look like a living thing."
        assert page.locator("#results li").count() == 0 and page.is_hidden("#rollup")
    else:
        assert verdict == "Not confident: best guesses below."
        assert "it is at least genus Vanessa" in page.inner_text("#rollup")
        listed = len(real.json()["results"])  # what the API listed (no noise of its own), none added
        assert page.locator("#results li").count() == listed and "Noise" not in page.inner_text("#results")


def test_at_most_five_photos_and_drop_adds(page):
    """Choosing four, then dropping two more, keeps five and says one was left out; a second photo
    the service cannot read is named in the error (a 422 for photo 2)."""
    good = (LEEDS / "005_0001.jpg").read_bytes()
    page.set_input_files(
        "#file", files=[{"name": f"p{i}.jpg", "mimeType": "image/jpeg", "buffer": good} for i in range(1, 5)]
    )
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            for (const name of ["d1.jpg", "d2.jpg"]) {
                data.items.add(new File(["x"], name, { type: "image/jpeg" }));
            }
            const drop = new DragEvent("drop", { dataTransfer: data, bubbles: true });
            document.getElementById("drop").dispatchEvent(drop);
        }"""
    )
    assert page.locator("#thumbs li").count() == 5
    assert "Up to 5 photos: 1 left out." in page.inner_text("#photos-note")
    for _ in range(3):
        page.click('#thumbs button[aria-label^="Remove photo 1"]')
    assert page.locator("#thumbs li").count() == 2  # p4.jpg and d1.jpg
    cut = (SHARED / "samples" / "Ara_macao_01.jpg").read_bytes()[:2000]
    page.click('#thumbs button[aria-label^="Remove photo 2"]')
    page.set_input_files("#file", files=[{"name": "cut.jpg", "mimeType": "image/jpeg", "buffer": cut}])
    made = posts(page)
    identify(page, group="auto")
    one_identify(made)
    assert page.is_visible("#error") and page.is_hidden("#answer")
    error = page.inner_text("#error")
    assert "damaged or cut short" in error and "photo 2 (cut.jpg)" in error, error
