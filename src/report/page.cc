// The HTML page: the data tables as JSON, the Vega-Lite specifications that
// draw them, and the chart library, all in one file.
#include <string_view>

#include "base/json.h"
#include "base/text_file.h"
#include "report/report.h"
#include "report/tables.h"

namespace mixq::report {
namespace {

constexpr std::string_view kHead = R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mixq report</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1180px; padding: 16px 24px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin: 28px 0 4px; border-top: 1px solid #ddd; padding-top: 14px; }
p.note { color: #555; margin: 2px 0 8px; max-width: 900px; } p.missing { color: #8a6d00; }
table { border-collapse: collapse; margin: 8px 0; } td, th { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child { text-align: left; }
#report-status { color: #777; font-size: 12px; margin-top: 24px; } #report-status[data-status="error"] { color: #b00; }
</style>
)";

// Builds the sections from window.REPORT (the tables of tables.cc), embeds
// every chart, then checks that each drew marks and records the outcome in
// #report-status (what the browser test reads).
constexpr std::string_view kPageScript = R"JS(
(function () {
  const D = JSON.parse(document.getElementById('report-data').textContent);
  const errors = [];
  window.addEventListener('error', e => errors.push(String(e.message || e)));
  window.addEventListener('unhandledrejection', e => errors.push(String(e.reason)));
  const main = document.getElementById('report');
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text) e.textContent = text; main.appendChild(e); return e; };
  const fmt = (x, d) => Number(x).toFixed(d);
  const charts = [];
  const section = (title, note) => { el('h2', null, title); if (note) el('p', 'note', note); };
  const chart = (id, spec) => { const div = el('div', 'chart'); div.id = id; charts.push([id, spec]); };
  const missing = text => el('p', 'missing', text);
  const layerAxis = { title: 'layer', labelAngle: 0, labelExpr: `datum.value < 0 ? 'embd' : datum.value >= ${D.n_layer} ? 'out' : datum.value` };

  el('h1', null, D.title || 'mixq report');
  el('p', 'note', `model: ${D.model}. Cost unit: ${D.cost_model}.`);
  if (D.chosen) {
    let s = `Chosen plan ${D.chosen.label}: ${fmt(D.chosen.file_mib, 2)} MiB, ${fmt(D.chosen.bpw, 3)} bpw, predicted KLD ${fmt(D.chosen.predicted_kld, 5)}.`;
    if (D.preset) s += ` Nearest llama.cpp preset given: ${D.preset.label} (${fmt(D.preset.file_mib, 2)} MiB).`;
    el('p', null, s);
  }
  if (D.evals.length) {
    const t = el('table');
    t.innerHTML = '<tr><th>file</th><th>made by</th><th>MiB</th><th>KLD</th><th>± s.e.</th><th>predicted</th></tr>';
    for (const e of [...D.evals].sort((a, b) => a.file_mib - b.file_mib)) {
      const r = t.insertRow();
      for (const v of [e.label, e.series.replace(', measured', ''), fmt(e.file_mib, 2), fmt(e.kld, 5), fmt(e.kld_stderr, 5),
                       e.predicted_kld === undefined ? '' : fmt(e.predicted_kld, 5)]) r.insertCell().textContent = v;
    }
  }

  section('KLD against file size',
    'Line: the KLD the measurement predicts for the best mixq plan at each size. Diamonds: the plans given. ' +
    'Circles: KLD measured on held-out text against the unquantized model (bars: ± 1 standard error), for mixq files ' +
    'and llama.cpp presets. Lower and further left is better.');
  const x = { field: 'file_mib', type: 'quantitative', title: 'file size (MiB)', scale: { zero: false } };
  const color = { field: 'series', type: 'nominal', title: null, legend: { orient: 'bottom', columns: 2, labelLimit: 0 } };
  // The predicted line over the sizes of the files and plans given (with a margin), else all of it.
  const sizes = [...D.plans, ...D.evals].map(r => r.file_mib);
  const curve = sizes.length ? D.curve.filter(c => c.file_mib >= 0.8 * Math.min(...sizes) && c.file_mib <= 1.2 * Math.max(...sizes)) : D.curve;
  chart('chart-kld-size', {
    width: 900, height: 360,
    layer: [
      { data: { values: curve }, mark: { type: 'line', point: false, strokeWidth: 1.5 },
        encoding: { x, y: { field: 'predicted_kld', type: 'quantitative', scale: { type: 'log' }, title: 'KLD (log scale)' }, color,
          tooltip: [{ field: 'bpw', format: '.2f' }, { field: 'predicted_kld', format: '.5f' }] } },
      { data: { values: D.plans }, mark: { type: 'point', shape: 'diamond', size: 110, filled: true },
        encoding: { x, y: { field: 'predicted_kld', type: 'quantitative' }, color,
          tooltip: ['label', { field: 'bpw', format: '.3f' }, { field: 'predicted_kld', format: '.5f' }] } },
      { data: { values: D.evals }, mark: { type: 'rule', strokeWidth: 1.5 },
        encoding: { x, y: { field: 'kld_lo', type: 'quantitative' }, y2: { field: 'kld_hi' }, color } },
      { data: { values: D.evals }, mark: { type: 'point', filled: true, size: 70 },
        encoding: { x, y: { field: 'kld', type: 'quantitative' }, color,
          tooltip: ['label', { field: 'file_mib', format: '.2f' }, { field: 'kld', format: '.5f' }, { field: 'kld_stderr', format: '.5f' }] } },
      { data: { values: D.evals }, mark: { type: 'text', align: 'left', dx: 7, dy: -7, fontSize: 10 },
        encoding: { x, y: { field: 'kld', type: 'quantitative' }, text: { field: 'label' } } }
    ],
    resolve: { scale: { y: 'shared' } }
  });
  if (!D.evals.length) missing('No evaluations given (--eval): only predictions are drawn.');

  section(`Measured sensitivity: ΔKLD of each tensor alone in ${D.sensitivity.type}`,
    `Each cell: the KLD the measurement predicts when only that tensor is quantized to ${D.sensitivity.type} ` +
    '(log colour scale). Dark cells are where bits buy the most.');
  chart('chart-sensitivity', {
    data: { values: D.sensitivity.cells }, width: 900, height: { step: 22 }, mark: 'rect',
    encoding: {
      x: { field: 'layer', type: 'ordinal', axis: layerAxis },
      y: { field: 'role', type: 'nominal', title: 'role' },
      color: { field: 'cost', type: 'quantitative', scale: { type: 'log', scheme: 'orangered' }, title: 'ΔKLD', legend: { format: '.0e' } },
      tooltip: ['unit', { field: 'cost', format: '.6f' }, { field: 'cost_per_mweight', format: '.6f', title: 'ΔKLD per million weights' }]
    }
  });

  section('Bits per weight by layer and role',
    'The chosen plan, and llama.cpp\'s preset nearest to it in file size (when its evaluation is given); ' +
    'each cell shows the type, the colour its bits per weight.');
  if (D.bits) {
    chart('chart-bits', {
      data: { values: D.bits },
      facet: { row: { field: 'source', type: 'nominal', title: null, sort: [...new Set(D.bits.map(b => b.source))],
        header: { labelFontSize: 13, labelOrient: 'top', labelAnchor: 'start', labelFontWeight: 'bold' } } },
      spec: {
        width: 820, height: { step: 22 },
        encoding: { x: { field: 'layer', type: 'ordinal', axis: layerAxis }, y: { field: 'role', type: 'nominal', title: 'role' } },
        layer: [
          { mark: 'rect', encoding: { color: { field: 'bpw', type: 'quantitative', scale: { scheme: 'viridis' }, title: 'bits/weight' },
            tooltip: ['source', 'layer', 'role', 'type', { field: 'bpw', format: '.3f' }] } },
          { mark: { type: 'text', fontSize: 8 }, encoding: { text: { field: 'type' },
            color: { condition: { test: 'datum.bpw > 5.5', value: 'black' }, value: 'white' } } }
        ]
      },
      resolve: { scale: { x: 'shared' } }
    });
    if (!D.preset) missing('No llama.cpp preset evaluation given (--eval of a llama-quantize file): only the plan is drawn.');
  } else {
    missing('No plan given (--plan): nothing to draw.');
  }

  section('Predicted against measured KLD',
    'Each point: one mix whose KLD was both predicted from the measurement (sum of its tensors\' costs) and ' +
    'measured. On the dashed line the prediction is exact.');
  if (D.validation.length) {
    const all = D.validation.flatMap(v => [v.predicted_kld, v.kld]).filter(v => v > 0);
    const diag = [{ v: Math.min(...all) / 1.5 }, { v: Math.max(...all) * 1.5 }];
    const logAxis = title => ({ type: 'quantitative', scale: { type: 'log' }, title });
    chart('chart-validation', {
      width: 480, height: 360,
      layer: [
        { data: { values: diag }, mark: { type: 'line', strokeDash: [4, 4], color: '#888' },
          encoding: { x: { field: 'v', ...logAxis('predicted KLD') }, y: { field: 'v', ...logAxis('measured KLD') } } },
        { data: { values: D.validation }, mark: { type: 'point', filled: true, size: 60 },
          encoding: { x: { field: 'predicted_kld', ...logAxis('predicted KLD') }, y: { field: 'kld', ...logAxis('measured KLD') },
            color: { field: 'kind', type: 'nominal', title: null, legend: { orient: 'bottom', labelLimit: 0 } },
            tooltip: ['label', { field: 'predicted_kld', format: '.5f' }, { field: 'kld', format: '.5f' }] } }
      ]
    });
  } else {
    missing('No validation given (--validate, the --json output of mixq measure --validate N) and no mixq auto evaluation.');
  }

  if (D.moe) {
    section('Mixture of experts: where the bytes go',
      'Tensor bytes of attention, shared experts, routed experts, router and the rest, and their bits per weight, ' +
      'for the chosen plan and the nearest preset. Hover a bar for the predicted KLD of the plan\'s part.');
    if (D.split) {
      chart('chart-moe-bytes', {
        data: { values: D.split }, width: 900, height: { step: 28 }, mark: 'bar',
        encoding: { y: { field: 'source', type: 'nominal', title: null }, x: { field: 'mib', type: 'quantitative', title: 'MiB', stack: 'zero' },
          color: { field: 'part', type: 'nominal', title: null, legend: { orient: 'bottom' } },
          tooltip: ['source', 'part', { field: 'mib', format: '.2f' }, { field: 'share', format: '.1%' }, { field: 'bpw', format: '.2f' }, { field: 'predicted_kld', format: '.5f' }] }
      });
      chart('chart-moe-bpw', {
        data: { values: D.split }, width: 900, height: 220, mark: 'bar',
        encoding: { x: { field: 'part', type: 'nominal', title: null, axis: { labelAngle: 0 } }, xOffset: { field: 'source' },
          y: { field: 'bpw', type: 'quantitative', title: 'bits per weight' }, color: { field: 'source', type: 'nominal', title: null, legend: { orient: 'bottom' } },
          tooltip: ['source', 'part', { field: 'bpw', format: '.2f' }] }
      });
    } else {
      missing('No plan given (--plan): nothing to split.');
    }
  }

  const status = el('p'); status.id = 'report-status'; status.dataset.status = 'rendering';
  const opts = { renderer: 'svg', actions: false };
  Promise.all(charts.map(([id, spec]) => vegaEmbed('#' + id, spec, opts))).then(() => {
    const empty = charts.map(([id]) => id).filter(id => {
      const svg = document.querySelector('#' + id + ' svg');
      return !svg || !(svg.getBoundingClientRect().width > 0) || svg.querySelectorAll('g.role-mark > *').length === 0;
    });
    if (empty.length) errors.push('charts without marks: ' + empty.join(', '));
    status.dataset.charts = String(charts.length);
    status.dataset.status = errors.length ? 'error' : 'ok';
    status.textContent = errors.length ? 'Rendering failed: ' + errors.join('; ') :
      `${charts.length} charts rendered with ${D.versions}.`;
  }, err => { errors.push(String(err)); status.dataset.status = 'error'; status.textContent = 'Rendering failed: ' + errors.join('; '); });
})();
)JS";

// Text inside <script> ends at the first "</script": escape it in the libraries' source.
std::string ScriptSafe(const std::string& js) {
  std::string out;
  out.reserve(js.size());
  for (size_t i = 0; i < js.size(); ++i) {
    if (js[i] == '<' && js.compare(i + 1, 7, "/script") == 0) {
      out += "<\\";
      continue;
    }
    out += js[i];
  }
  return out;
}

// JSON inside <script type="application/json">: '<' as \u003c, so that no
// string of the data can close the element.
std::string JsonSafe(const std::string& json) {
  std::string out;
  out.reserve(json.size());
  for (char c : json) {
    if (c == '<') {
      out += "\\u003c";
    } else {
      out += c;
    }
  }
  return out;
}

// "Vega 5.33.1, Vega-Lite 5.23.0, vega-embed 6.29.0", for the page's footer.
std::string LibraryVersions(const ChartLibrary& library) {
  auto v = nlohmann::json::parse(library.versions, nullptr, false);
  auto of = [&](const char* package) { return v.is_object() ? v.value(package, "?") : "?"; };
  return "Vega " + of("vega") + ", Vega-Lite " + of("vega-lite") + ", vega-embed " + of("vega-embed");
}

}  // namespace

Result<std::string> RenderHtml(const ReportInputs& inputs, const ChartLibrary& library) {
  auto tables = internal::BuildTables(inputs);
  MIXQ_TRY(tables);
  (*tables)["versions"] = LibraryVersions(library);
  std::string html(kHead);
  for (const std::string* lib : {&library.vega, &library.vega_lite, &library.vega_embed}) {
    html += "<script>" + ScriptSafe(*lib) + "</script>\n";
  }
  html += "</head><body><main id=\"report\"></main>\n<script type=\"application/json\" id=\"report-data\">";
  html += JsonSafe(json::DumpJson(*tables));
  html += "</script>\n<script>";
  html += kPageScript;
  html += "</script>\n</body></html>\n";
  return html;
}

Status WriteReport(const ReportInputs& inputs, const ChartLibrary& library, const std::string& path) {
  auto html = RenderHtml(inputs, library);
  MIXQ_TRY(html);
  return WriteTextFileAtomic(path, *html);
}

}  // namespace mixq::report
