// The studio's page: takes upload one after another with a progress bar each (streamed, never a whole form), and a
// running job's progress is polled once a second. Everything else is plain HTML forms.
"use strict";
const csrf = document.querySelector('meta[name="csrf"]').content;

function uploadOne(url, file, row) {
  return new Promise((resolve) => {
    const bar = row.querySelector("progress"), note = row.querySelector(".note");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.setRequestHeader("X-Requested-With", "fetch");
    xhr.setRequestHeader("X-File-Name", encodeURIComponent(file.name));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
    xhr.onload = () => {
      let answer = {};
      try { answer = JSON.parse(xhr.responseText); } catch (err) { answer = {error: xhr.statusText}; }
      if (xhr.status === 200) {
        bar.value = 1;
        row.className = "done";
        note.textContent = `uploaded (${answer.kind}, ${answer.duration_s} s)` + (answer.note ? `: ${answer.note}` : "");
      } else {
        row.className = "failed";
        note.textContent = `refused: ${answer.error}` + (answer.fix ? ` What to do: ${answer.fix}` : "");
      }
      resolve(xhr.status === 200);
    };
    xhr.onerror = () => { row.className = "failed"; note.textContent = "the connection failed; upload it again"; resolve(false); };
    xhr.send(file);
  });
}

async function uploadAll(drop, files) {
  const list = document.getElementById("upload-list");
  const rows = Array.from(files).map((file) => {
    const li = document.createElement("li");
    li.innerHTML = '<span class="name"></span> <progress max="1" value="0"></progress> <span class="note">waiting</span>';
    li.querySelector(".name").textContent = file.name;
    list.appendChild(li);
    return [file, li];
  });
  let ok = 0;
  for (const [file, li] of rows) {  // one at a time: the studio takes one upload per clone at once
    li.querySelector(".note").textContent = "uploading";
    if (await uploadOne(drop.dataset.url, file, li)) ok += 1;
  }
  drop.dataset.finished = String(rows.length);
  drop.dataset.ok = String(ok);
  if (ok > 0 && ok === rows.length) setTimeout(() => window.location.reload(), 600);
}

const drop = document.getElementById("drop");
if (drop) {
  const input = document.getElementById("take-files");
  input.addEventListener("change", () => uploadAll(drop, input.files));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); uploadAll(drop, e.dataTransfer.files); });
}

document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (e) => { if (!window.confirm(form.dataset.confirm)) e.preventDefault(); });
});

// Each take's verdict shows as soon as ingest has read the takes, while the later stages still run.
async function refreshTakes() {
  const html = await (await fetch(window.location.href)).text();
  const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("takes");
  const table = document.getElementById("takes");
  if (fresh && table) table.replaceWith(fresh);
}

const panel = document.getElementById("job-panel");
if (panel && panel.dataset.state === "running") {
  let takesShown = false;
  const poll = async () => {
    let job;
    try {
      const r = await fetch(`/jobs/${panel.dataset.job}`, {headers: {"X-Requested-With": "fetch"}});
      job = await r.json();
    } catch (err) { setTimeout(poll, 2000); return; }
    document.getElementById("job-state").textContent = job.state;
    for (const [stage, state] of Object.entries(job.stages)) {
      const li = panel.querySelector(`li[data-stage="${stage}"]`);
      if (li) { li.querySelector("span").textContent = state; li.className = "state-" + state.replace(" ", "-"); }
    }
    document.getElementById("job-progress").textContent = job.progress || "";
    if (!takesShown && ["done", "up to date"].includes(job.stages.ingest)) { takesShown = true; refreshTakes(); }
    document.getElementById("job-log").textContent = job.log_tail;
    if (job.error) {
      document.getElementById("job-error").hidden = false;
      document.getElementById("job-error-text").textContent = job.error;
      document.getElementById("job-fix").textContent = job.fix || "";
    }
    if (job.state === "running") setTimeout(poll, 1000);
    else window.location.reload();  // the verdicts, versions and renders it made
  };
  setTimeout(poll, 1000);
}
