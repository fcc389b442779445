"""The small HTML page at ``GET /`` for trying a prediction from a browser."""

from __future__ import annotations

import json

from retail_serving.payloads import EXAMPLE

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Price sensitivity predictor</title>
<style>
 body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}
 textarea{width:100%;height:15rem;font-family:monospace}
 pre{background:#f4f4f4;padding:1rem;white-space:pre-wrap}
</style></head>
<body>
<h1>Price sensitivity predictor</h1>
<p>Edit the basket and press <em>Predict</em>. Model: <span id="model">…</span>.
 API: <a href="/docs">/docs</a>, <a href="/model/info">/model/info</a>,
 <a href="/metrics">/metrics</a>.</p>
<textarea id="request">__EXAMPLE__</textarea>
<p><button id="go">Predict</button></p>
<pre id="answer"></pre>
<script>
fetch("/model/info").then(r => r.json())
  .then(info => { document.getElementById("model").textContent = info.version || "none"; })
  .catch(() => {});
document.getElementById("go").onclick = async () => {
  const answer = document.getElementById("answer");
  try {
    const response = await fetch("/predict", {method: "POST",
      headers: {"content-type": "application/json"},
      body: document.getElementById("request").value});
    answer.textContent = response.status + "\\n" +
      JSON.stringify(await response.json(), null, 2);
  } catch (error) { answer.textContent = String(error); }
};
</script>
</body></html>
""".replace("__EXAMPLE__", json.dumps(EXAMPLE, indent=2))
