#include "pipeline/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace escale::pipeline {

namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                         "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string Label(double v) {
  char buf[32];
  const double a = std::abs(v);
  if (a != 0 && (a >= 1e5 || a < 1e-3))
    std::snprintf(buf, sizeof buf, "%.2g", v);
  else
    std::snprintf(buf, sizeof buf, "%g", std::round(v * 1e6) / 1e6);
  return buf;
}

}  // namespace

std::string HtmlEscape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

std::vector<double> NiceTicks(double lo, double hi, int target) {
  std::vector<double> t;
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    t.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  return t;
}

std::string RenderSvg(const PlotSpec& p) {
  const double left = 64, right = 150, top = 30, bottom = 44;
  const double W = p.width, H = p.height, pw = W - left - right, ph = H - top - bottom;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  auto ty = [&](double y) { return p.log_y ? std::log10(y) : y; };
  auto tx = [&](double x) { return p.log_x ? std::log10(x) : x; };
  auto shown = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && !(p.log_y && y <= 0) && !(p.log_x && x <= 0);
  };
  for (const Series& s : p.series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!shown(s.x[i], s.y[i])) continue;
      x0 = std::min(x0, tx(s.x[i])), x1 = std::max(x1, tx(s.x[i]));
      y0 = std::min(y0, ty(s.y[i])), y1 = std::max(y1, ty(s.y[i]));
    }
  std::string o = "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" width=\"" + Num(W) +
                  "\" height=\"" + Num(H) + "\" viewBox=\"0 0 " + Num(W) + " " + Num(H) +
                  "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  o += "<text x=\"" + Num(left) + "\" y=\"18\" font-size=\"13\" font-weight=\"bold\">" +
       HtmlEscape(p.title) + "</text>\n";
  if (!std::isfinite(x0)) {
    o += "<text x=\"" + Num(left + pw / 2) + "\" y=\"" + Num(top + ph / 2) +
         "\" text-anchor=\"middle\">no data</text>\n</svg>\n";
    return o;
  }
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y0 -= 0.5, y1 += 0.5;
  const double pad = (y1 - y0) * 0.05;
  y0 -= pad, y1 += pad;
  auto X = [&](double x) { return left + (tx(x) - x0) / (x1 - x0) * pw; };
  auto Y = [&](double y) { return top + ph - (ty(y) - y0) / (y1 - y0) * ph; };
  o += "<rect x=\"" + Num(left) + "\" y=\"" + Num(top) + "\" width=\"" + Num(pw) + "\" height=\"" +
       Num(ph) + "\" fill=\"none\" stroke=\"#888\"/>\n";
  for (double tick : NiceTicks(x0, x1)) {
    const double t = p.log_x ? std::pow(10.0, tick) : tick;
    o += "<line x1=\"" + Num(X(t)) + "\" x2=\"" + Num(X(t)) + "\" y1=\"" + Num(top + ph) +
         "\" y2=\"" + Num(top + ph + 4) + "\" stroke=\"#888\"/><text x=\"" + Num(X(t)) + "\" y=\"" +
         Num(top + ph + 16) + "\" text-anchor=\"middle\">" + Label(t) + "</text>\n";
  }
  for (double t : NiceTicks(y0, y1, 5)) {
    const double yv = p.log_y ? std::pow(10.0, t) : t;
    o += "<line x1=\"" + Num(left) + "\" x2=\"" + Num(left + pw) + "\" y1=\"" + Num(Y(yv)) +
         "\" y2=\"" + Num(Y(yv)) + "\" stroke=\"#eee\"/><text x=\"" + Num(left - 6) + "\" y=\"" +
         Num(Y(yv) + 4) + "\" text-anchor=\"end\">" + Label(yv) + "</text>\n";
  }
  o += "<text x=\"" + Num(left + pw / 2) + "\" y=\"" + Num(H - 8) + "\" text-anchor=\"middle\">" +
       HtmlEscape(p.x_label) + "</text>\n";
  o += "<text transform=\"translate(14," + Num(top + ph / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + HtmlEscape(p.y_label) + "</text>\n";
  for (const Marker& m : p.markers) {
    if (!shown(m.x, 1.0) || tx(m.x) < x0 || tx(m.x) > x1) continue;
    o += "<line class=\"marker\" x1=\"" + Num(X(m.x)) + "\" x2=\"" + Num(X(m.x)) + "\" y1=\"" +
         Num(top) + "\" y2=\"" + Num(top + ph) +
         "\" stroke=\"#999\" stroke-dasharray=\"4 3\"/><text x=\"" + Num(X(m.x) + 3) + "\" y=\"" +
         Num(top + 11) + "\" fill=\"#666\">" + HtmlEscape(m.label) + "</text>\n";
  }
  for (size_t si = 0; si < p.series.size(); ++si) {
    const Series& s = p.series[si];
    const char* color = kColors[si % std::size(kColors)];
    std::string pts;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!shown(s.x[i], s.y[i])) continue;
      if (s.markers)
        o += "<circle cx=\"" + Num(X(s.x[i])) + "\" cy=\"" + Num(Y(s.y[i])) + "\" r=\"3\" fill=\"" +
             color + "\"/>\n";
      else
        pts += Num(X(s.x[i])) + "," + Num(Y(s.y[i])) + " ";
    }
    if (!s.markers && !pts.empty())
      o += "<polyline class=\"series\" fill=\"none\" stroke=\"" + std::string(color) +
           "\" stroke-width=\"1.5\" points=\"" + pts + "\"/>\n";
    const double ly = top + 12 + 16 * static_cast<double>(si);
    o += "<rect x=\"" + Num(left + pw + 10) + "\" y=\"" + Num(ly - 8) +
         "\" width=\"12\" height=\"8\" fill=\"" + color + "\"/><text x=\"" + Num(left + pw + 26) +
         "\" y=\"" + Num(ly) + "\">" + HtmlEscape(s.name) + "</text>\n";
  }
  o += "</svg>\n";
  return o;
}

}  // namespace escale::pipeline
