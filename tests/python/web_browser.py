#!/usr/bin/env python3
"""The web timeline in a real browser: headless Chromium from the Debian packages, driven by
selenium through Debian's chromedriver. Run by tests/tests/web_timeline.rs, which starts the
OpenID provider and naast, registers the demo families and writes notes when asked.

A parent and a supporter each sign in, in a browser of their own, through the provider's own
login page (authorization code flow with PKCE). The parent sees the family's timeline, filters
it, grants the supporter one life domain (after a form without its CSRF token is refused and
nothing written); the supporter sees that domain only, and a note written meanwhile arrives
live; the parent revokes, the supporter's open page stops receiving updates and is refused on
reload; the parent's "who looked" page lists the supporter's visits. axe-core checks every
page of naast for serious and critical accessibility violations; each page's screenshot is
kept in NAAST_ARTIFACTS.

Talks to the Rust test over stdio: prints `NOTE <life domain> <text>` and waits for `OK`;
prints `DONE` when every check passed. Any failed check ends it with a traceback and exit 1.
"""

import os
import shutil
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

WEB = os.environ["NAAST_WEB"]
HOUSEHOLD = os.environ["NAAST_HOUSEHOLD"]
PARENT = os.environ["NAAST_PARENT_LOGIN"]
SUPPORTER = os.environ["NAAST_SUPPORTER_LOGIN"]
SUPPORTER_NAME = os.environ["NAAST_SUPPORTER_NAME"]
DOMAIN = os.environ["NAAST_DOMAIN"]
DOMAIN_LABEL = os.environ["NAAST_DOMAIN_LABEL"]
AXE = os.environ["NAAST_AXE"]
ARTIFACTS = os.environ["NAAST_ARTIFACTS"]
WAIT = float(os.environ.get("NAAST_BROWSER_WAIT", "30"))

HOUSEHOLD_PAGE = f"{WEB}/huishoudens/{HOUSEHOLD}"
violations = []
BROWSERS = []


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
        "--lang=nl",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        service=Service(executable_path=shutil.which("chromedriver")), options=options
    )
    BROWSERS.append(driver)
    driver.set_page_load_timeout(WAIT * 2)
    driver.set_script_timeout(WAIT * 2)
    return driver


def wait_for(what, check, timeout=WAIT, driver=None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except Exception as error:  # the page may be between two loads
            last = error
        time.sleep(0.2)
    where = ""
    for open_browser in [driver] if driver is not None else BROWSERS:
        try:
            body = open_browser.find_element(By.TAG_NAME, "body").text[:500]
            where += f"\n  at {open_browser.current_url}: {body!r}"
        except Exception as error:
            where += f"\n  (cannot read a page: {error})"
    raise AssertionError(f"waited {timeout} s for {what}; last saw {last!r}{where}")


def heading(driver):
    return driver.find_element(By.TAG_NAME, "h1").text


def entries(driver):
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "li.entry")]


def check_page(driver, name):
    """Keeps a screenshot, checks the page's language, and runs axe-core on it."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    driver.save_screenshot(os.path.join(ARTIFACTS, f"{name}.png"))
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "nl", name
    with open(AXE, encoding="utf-8") as source:
        driver.execute_script(source.read())
    found = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        axe.run(document).then(
          (r) => done(r.violations.map((v) => ({id: v.id, impact: v.impact, nodes: v.nodes.length}))),
          (e) => done([{id: 'axe-failed', impact: 'critical', nodes: String(e)}]));
        """
    )
    serious = [v for v in found if v["impact"] in ("serious", "critical")]
    print(f"axe {name}: {len(found)} violations, {len(serious)} serious or critical: {found}",
          file=sys.stderr)
    violations.extend((name, v) for v in serious)


def sign_in(driver, login):
    """Through naast's start page and the provider's own login page."""
    driver.get(WEB + "/")
    driver.find_element(By.LINK_TEXT, "Aanmelden").click()
    wait_for("the provider's login page", lambda: driver.find_element(By.NAME, "login"),
             driver=driver)
    driver.find_element(By.NAME, "login").send_keys(login)
    driver.find_element(By.NAME, "password").send_keys("any password")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for("back at naast, signed in",
             lambda: driver.current_url.startswith(WEB + "/huishoudens"), driver=driver)


def ask(line):
    print(line, flush=True)
    answer = sys.stdin.readline().strip()
    assert answer == "OK", f"the test answered {answer!r} to {line!r}"


def grant_items(driver):
    return driver.find_elements(By.CSS_SELECTOR, "ul.grants > li")


def main():
    parent = browser()
    supporter = browser()
    try:
        # The parent signs in and sees the family's timeline.
        sign_in(parent, PARENT)
        assert heading(parent) == "Mijn huishoudens", heading(parent)
        check_page(parent, "01-huishoudens-ouder")
        parent.find_element(By.CSS_SELECTOR, f"a[href='/huishoudens/{HOUSEHOLD}/tijdlijn']").click()
        wait_for("the family's timeline", lambda: heading(parent).startswith("Tijdlijn van"))
        everything = entries(parent)
        assert everything, "the parent sees no entries"
        assert parent.find_elements(By.CSS_SELECTOR, "section.day h2 time"), "no days"
        check_page(parent, "02-tijdlijn-ouder")

        # Filtered by the life domain the supporter will get.
        Select(parent.find_element(By.ID, "leefgebied")).select_by_value(DOMAIN)
        parent.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
        wait_for("the filtered timeline", lambda: f"leefgebied={DOMAIN}" in parent.current_url)
        filtered = entries(parent)
        assert 0 < len(filtered) < len(everything), (len(filtered), len(everything))
        assert all(DOMAIN_LABEL in e for e in filtered), filtered
        check_page(parent, "03-tijdlijn-gefilterd")

        for path, title, name in (
            ("plan", "Plan en afspraken", "04-plan"),
            ("afdrukken", "Tijdlijn van", "05-afdrukken"),
        ):
            parent.get(f"{HOUSEHOLD_PAGE}/{path}")
            assert heading(parent).startswith(title), heading(parent)
            check_page(parent, name)
        assert len(entries(parent)) >= len(everything)

        # A form posted without its CSRF token is refused, and nothing is written.
        parent.get(f"{HOUSEHOLD_PAGE}/toegang")
        assert heading(parent) == "Wie heeft toegang", heading(parent)
        check_page(parent, "06-toegang")
        before = len(grant_items(parent))
        parent.execute_script(
            """
            const form = document.createElement('form');
            form.method = 'post';
            form.action = arguments[0];
            for (const [name, value] of [['persoon', arguments[1]], ['recht', 'lezen']]) {
              const input = document.createElement('input');
              input.type = 'hidden'; input.name = name; input.value = value;
              form.appendChild(input);
            }
            document.body.appendChild(form);
            form.submit();
            """,
            f"/huishoudens/{HOUSEHOLD}/toegang",
            SUPPORTER,
        )
        wait_for("the refusal", lambda: heading(parent) == "Formulier niet verwerkt")
        check_page(parent, "06b-formulier-geweigerd")
        parent.get(f"{HOUSEHOLD_PAGE}/toegang")
        assert len(grant_items(parent)) == before, "a form without its token wrote a grant"
        assert f"Persoon {SUPPORTER}" not in parent.page_source

        # The parent grants the supporter the one life domain.
        parent.find_element(By.ID, "persoon").send_keys(SUPPORTER)
        parent.find_element(By.ID, f"lg-{DOMAIN}").click()
        parent.find_element(By.CSS_SELECTOR, "form.grant button[type=submit]").click()
        wait_for("the new grant", lambda: len(grant_items(parent)) == before + 1)
        granted = [g for g in grant_items(parent) if f"Persoon {SUPPORTER}" in g.text]
        assert len(granted) == 1 and DOMAIN_LABEL in granted[0].text, [g.text for g in granted]

        # The supporter signs in and sees that domain only.
        sign_in(supporter, SUPPORTER)
        assert heading(supporter) == "Mijn caseload", heading(supporter)
        link = f"a[href='/huishoudens/{HOUSEHOLD}/tijdlijn']"

        def caseload_lists_the_family():
            supporter.refresh()
            return supporter.find_elements(By.CSS_SELECTOR, link)

        wait_for("the family in the caseload", caseload_lists_the_family)
        check_page(supporter, "07-caseload")
        supporter.find_element(By.CSS_SELECTOR, link).click()
        wait_for("the supporter's timeline", lambda: entries(supporter))
        seen = entries(supporter)
        assert all(DOMAIN_LABEL in e for e in seen), seen
        assert seen == filtered, (seen, filtered)
        assert not supporter.find_elements(By.ID, "lid"), "a one-domain reader sees the members"
        check_page(supporter, "08-tijdlijn-ondersteuner")
        timeline = supporter.find_element(By.CSS_SELECTOR, "div.timeline")
        wait_for("the live updates", lambda: timeline.get_attribute("data-live-state") == "open")

        # A note in that domain arrives on the open page.
        ask(f"NOTE {DOMAIN} Live-notitie tijdens het bezoek")
        wait_for("the live note", lambda: "Live-notitie tijdens het bezoek" in timeline.text)
        assert "Nieuw op de tijdlijn" in supporter.find_element(By.ID, "live-status").text

        # The parent revokes: the supporter's open page stops, and is refused on reload.
        parent.get(f"{HOUSEHOLD_PAGE}/toegang")
        for item in grant_items(parent):
            if f"Persoon {SUPPORTER}" in item.text:
                item.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
                break
        else:
            raise AssertionError("the supporter's grant is not listed")
        wait_for("the revocation",
                 lambda: not any(f"Persoon {SUPPORTER}" in g.text for g in grant_items(parent)))
        wait_for("the supporter's page to stop",
                 lambda: timeline.get_attribute("data-live-state") == "ended")
        assert "geen toegang" in supporter.find_element(By.ID, "live-status").text
        ask(f"NOTE {DOMAIN} Geschreven na het intrekken")
        time.sleep(3)
        assert "Geschreven na het intrekken" not in supporter.page_source
        supporter.refresh()
        wait_for("the refusal on reload", lambda: heading(supporter) == "Geen toegang")
        check_page(supporter, "08b-geen-toegang")

        # Who looked: the supporter's visits, allowed and refused.
        parent.get(f"{HOUSEHOLD_PAGE}/inzage")
        assert heading(parent) == "Wie keek mee", heading(parent)
        rows = [r.text for r in parent.find_elements(By.CSS_SELECTOR, "table.access-log tbody tr")]
        visits = [r for r in rows if SUPPORTER_NAME in r]
        assert any("tijdlijn bekeken" in r and "toegestaan" in r and "deze website" in r
                   for r in visits), rows
        assert any("tijdlijn bekeken" in r and "geweigerd" in r for r in visits), rows
        check_page(parent, "09-inzage")

        # Signing out ends the session here and at the provider (confirmed on its own page), so
        # on a shared computer the next person cannot sign in as the parent without a password.
        parent.find_element(By.CSS_SELECTOR, "header form button[type=submit]").click()
        wait_for("the provider's sign-out page",
                 lambda: parent.find_elements(By.CSS_SELECTOR, "button[name=logout][value=yes]"))
        parent.find_element(By.CSS_SELECTOR, "button[name=logout][value=yes]").click()
        wait_for("the start page", lambda: heading(parent) == "Aanmelden bij naast")
        check_page(parent, "10-aanmelden")
        parent.get(WEB + "/huishoudens")
        wait_for("back at the start page", lambda: parent.current_url == WEB + "/")
        parent.find_element(By.LINK_TEXT, "Aanmelden").click()
        wait_for("the provider asking for a password again",
                 lambda: parent.find_elements(By.NAME, "password"), driver=parent)
    finally:
        parent.quit()
        supporter.quit()
    assert not violations, f"serious or critical accessibility violations: {violations}"
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
