// Line charts as inline SVG for the HTML report: no script, no external file, so the report is
// one self-contained page that any browser (or a test parsing it) reads the same way.
#pragma once

#include <string>
#include <vector>

namespace escale::pipeline {

struct Series {
  std::string name;
  std::vector<double> x, y;  // same length; non-finite points are skipped
  bool markers = false;      // dots instead of a line (sparse data such as validation loss)
};

struct Marker {
  double x = 0;
  std::string label;  // a vertical dashed line with this label (stage boundaries)
};

struct PlotSpec {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  std::vector<Marker> markers;
  bool log_y = false;
  bool log_x = false;  // x values <= 0 are skipped
  int width = 760, height = 300;
};

// The chart as an <svg> element. Empty data gives a chart saying "no data".
std::string RenderSvg(const PlotSpec& p);

// 1-2-5 tick values covering [lo, hi], about `target` of them.
std::vector<double> NiceTicks(double lo, double hi, int target = 6);
// Escapes &, <, >, " for HTML text and attributes.
std::string HtmlEscape(const std::string& s);

}  // namespace escale::pipeline
