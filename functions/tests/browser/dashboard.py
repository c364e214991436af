"""The dashboard in headless Chromium (Debian's, driven by Playwright): called by
dashboard_browser.rs with the worker's API base, its key and a folder for screenshots, after
it has made a completed run (`run-ok`, with a retried activity), a failed one (`run-bad`)
and a running one (`run-live`), with a yearly schedule configured. Exits non-zero with the reason on the first thing that does
not hold."""

import os
import re
import sys

from playwright.sync_api import expect, sync_playwright

base, key, shots = sys.argv[1], sys.argv[2], sys.argv[3]
# and a medallion run on the sample (`run-lake`).
chromium = os.environ.get("FLOWFORGE_CHROMIUM", "/usr/bin/chromium")
ui = base + "ui/"

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []  # script exceptions: none may happen
    console = []  # console errors, shown on failure (the refused loads above are among them)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and console.append(m.text))

    def explain(kind, value, trace):
        # A failed expectation: what the page showed and said, for the reader of the log.
        sys.__excepthook__(kind, value, trace)
        try:
            print("page errors:", errors, "console:", console, file=sys.stderr)
            print("page text:", page.inner_text("body")[:2000], file=sys.stderr)
        except Exception:  # the page may be gone
            pass

    sys.excepthook = explain

    # Without the key nothing is shown: the page itself is refused, and a wrong key too.
    for url in (ui, ui + "?code=wrong"):
        reply = page.goto(url)
        assert reply.status == 401, f"{url}: {reply.status}"
        body = page.content()
        assert "run-ok" not in body and "run-bad" not in body, f"{url} shows runs"

    # The runs list, with the key.
    reply = page.goto(ui + "?code=" + key)
    assert reply.status == 200, reply.status
    assert reply.headers.get("content-security-policy", "").startswith("default-src 'none'")
    assert reply.headers.get("referrer-policy") == "no-referrer"
    for run in ("run-ok", "run-bad", "run-live"):
        expect(page.locator(f'tr[data-instance="{run}"]')).to_be_visible()
    expect(page.locator('tr[data-instance="run-ok"] [data-status]')).to_have_text("Completed")
    expect(page.locator('tr[data-instance="run-bad"] [data-status]')).to_have_text("Failed")
    page.screenshot(path=os.path.join(shots, "dashboard-runs.png"), full_page=True)

    # Filter by status: only the failed run is left.
    page.select_option('select[name="status"]', ["Failed"])
    page.click('form#filters button[type="submit"]')
    expect(page.locator('tr[data-instance="run-ok"]')).to_have_count(0)
    expect(page.locator('tr[data-instance="run-bad"]')).to_be_visible()

    # The failed run: its failure with the engine's code.
    page.click('tr[data-instance="run-bad"] a')
    expect(page.locator("#run-status [data-status]")).to_have_text("Failed")
    expect(page.locator("#failure")).to_contain_text("FFD-DA01")

    # The completed run: a timeline with both attempts of the retried activity and the
    # back-off timer between them, the history table, the output.
    page.goto(ui + "?code=" + key + "#/run/run-ok")
    expect(page.locator("#run-status [data-status]")).to_have_text("Completed")
    expect(page.locator('#timeline .lane[data-kind="timer"]').first).to_be_visible()
    failed_attempts = page.locator("#timeline .bar.bad")
    expect(failed_attempts).to_have_count(1)
    activities = page.locator('#timeline .lane[data-kind="activity"]')
    assert activities.count() == 4, f"{activities.count()} activity lanes"
    expect(page.locator("#history")).to_contain_text("TaskCompleted")
    expect(page.locator("#output")).to_contain_text('"total"')
    # Its logs: one section per attempt; the retried activity's first attempt says why it
    # failed, its second attempt is a section of its own.
    flaky = page.locator('#logs details.attempt', has_text="flaky-b.csv")
    expect(flaky).to_have_count(2)
    expect(flaky.first).to_contain_text("the read was cut off")
    expect(page.locator("#logs details.attempt")).to_have_count(3)  # `sum` logs nothing
    # Its chained run (started when it completed), and the way back from there.
    chained = page.locator('#chained a[data-chained="run-ok-then-approval"]')
    expect(chained).to_be_visible()
    page.screenshot(path=os.path.join(shots, "dashboard-run.png"), full_page=True)
    chained.click()
    expect(page.locator("#chained")).to_contain_text("Started after run-ok")
    page.goto(ui + "?code=" + key + "#/run/run-ok")
    expect(page.locator("#run-status [data-status]")).to_have_text("Completed")

    # The medallion run: artifacts per layer with row counts, and what each layer logged.
    page.goto(ui + "?code=" + key + "#/run/run-lake")
    expect(page.locator("#run-status [data-status]")).to_have_text("Completed")
    expect(page.locator("#artifacts")).to_contain_text("2246")
    expect(page.locator('#logs details[data-activity="bronze"]').first).to_contain_text("bronze: written as landed")
    expect(page.locator('#logs details[data-activity="silver"]')).to_contain_text("silver: written")
    expect(page.locator('#logs details[data-activity="gold"]')).to_contain_text("gold: written")
    page.screenshot(path=os.path.join(shots, "dashboard-medallion.png"), full_page=True)

    # Keyboard: the first link of the page is reachable with Tab.
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement && document.activeElement.tagName")
    assert focused in ("A", "BUTTON", "INPUT", "SELECT"), focused

    # Terminate the running one from its page, confirming the dialog.
    page.goto(ui + "?code=" + key + "#/run/run-live")
    expect(page.locator("#run-status [data-status]")).to_have_text(re.compile("Running|Pending"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.click('button[data-action="terminate"]')
    expect(page.locator("#run-status [data-status]")).to_have_text("Terminated", timeout=30000)

    # Schedules: the configured one with its next five occurrences and its latest one,
    # which has not run (it is yearly, on 1 January).
    page.goto(ui + "?code=" + key + "#/schedules")
    yearly = page.locator('section[data-schedule="yearly"]')
    expect(yearly).to_be_visible()
    expect(yearly.locator("ul.next li")).to_have_count(5)
    expect(yearly.locator("ul.recent")).to_contain_text("not started")
    # A dry-run backfill of two years: the two 1 January occurrences, nothing started.
    yearly.locator('input[name="from"]').fill("2019-12-31T00:00")
    yearly.locator('input[name="to"]').fill("2021-12-31T00:00")
    yearly.locator('button[value="dry"]').click()
    expect(yearly.locator('[data-result="yearly"]')).to_have_text("2 planned")
    # Pause with a reason (the prompt), see it paused with no next occurrences; resume.
    page.once("dialog", lambda dialog: dialog.accept("upstream maintenance"))
    yearly.locator('button[data-action="pause"]').click()
    yearly = page.locator('section[data-schedule="yearly"]')
    expect(yearly.locator("[data-paused]")).to_have_text("Paused")
    expect(yearly.locator("[data-pause-reason]")).to_contain_text("upstream maintenance")
    expect(yearly.locator("ul.next li")).to_have_count(0)
    yearly.locator('button[data-action="resume"]').click()
    expect(page.locator('section[data-schedule="yearly"] ul.next li')).to_have_count(5)
    expect(page.locator('section[data-schedule="yearly"] [data-paused]')).to_have_count(0)
    # A new schedule from the form appears as a card, then is deleted.
    page.click("details.new-schedule summary")
    form = page.locator("#new-schedule")
    form.locator('input[name="name"]').fill("from-ui")
    form.locator('input[name="cron"]').fill("0 0 3 * * *")
    form.locator('input[name="timeZone"]').fill("Europe/Berlin")
    form.locator('input[name="orchestration"]').fill("demo")
    form.locator('input[name="input"]').fill('{"files": [], "pause_ms": 0}')
    form.locator('button[type="submit"]').click()
    created = page.locator('section[data-schedule="from-ui"]')
    expect(created).to_contain_text("Europe/Berlin")
    page.once("dialog", lambda dialog: dialog.accept())
    created.locator('button[data-action="delete"]').click()
    expect(page.locator('section[data-schedule="from-ui"]')).to_have_count(0)

    # Narrow screens: the list still works at 390 px.
    narrow = browser.new_page(viewport={"width": 390, "height": 844})
    narrow.goto(ui + "?code=" + key)
    expect(narrow.locator('tr[data-instance="run-live"] [data-status]')).to_have_text("Terminated")
    width = narrow.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide at 390"
    narrow.screenshot(path=os.path.join(shots, "dashboard-narrow.png"), full_page=True)

    assert not errors, f"script errors: {errors}"
    browser.close()
print("dashboard: PASS")
