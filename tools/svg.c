/* svg.c - the charts of svg.h, written as plain SVG 1.1. */
#include "svg.h"

#include <errno.h>
#include <math.h>
#include <string.h>

static const char *const palette[] = {
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
};

int svg_line_plot(const char *path, const char *title, const char *x_label,
                  const char *y_label, const double *x, int n_x,
                  const struct svg_series *s, int n_series, int log_x)
{
    FILE *f = fopen(path, "w");
    if (!f) return -errno;
    const double W = 720, H = 440, L = 70, R = 170, T = 40, B = 50;
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int i = 0; i < n_x; i++) {
        double xv = log_x ? log2(x[i]) : x[i];
        xmin = fmin(xmin, xv);
        xmax = fmax(xmax, xv);
        for (int k = 0; k < n_series; k++)
            if (!isnan(s[k].y[i])) { ymin = fmin(ymin, s[k].y[i]); ymax = fmax(ymax, s[k].y[i]); }
    }
    if (!(xmax > xmin)) xmax = xmin + 1;
    if (!(ymax > ymin)) { ymin = isfinite(ymin) ? ymin - 1 : 0; ymax = ymin + 2; }
    double pad = 0.05 * (ymax - ymin);
    ymin -= pad;
    ymax += pad;
#define PX(v) (L + ((v) - xmin) / (xmax - xmin) * (W - L - R))
#define PY(v) (H - B - ((v) - ymin) / (ymax - ymin) * (H - T - B))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"15\">%s</text>\n", L, title);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, H - B, W - R, H - B);
    fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, T, L, H - B);
    for (int i = 0; i < n_x; i++) {
        double xv = log_x ? log2(x[i]) : x[i];
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%g</text>\n", PX(xv), H - B + 16, x[i]);
    }
    for (int k = 0; k <= 5; k++) {
        double yv = ymin + (ymax - ymin) * k / 5;
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", L - 6, PY(yv) + 4, yv);
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, PY(yv), W - R, PY(yv));
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", (L + W - R) / 2, H - 12, x_label);
    fprintf(f, "<text x=\"16\" y=\"%.0f\" transform=\"rotate(-90 16 %.0f)\" text-anchor=\"middle\">%s</text>\n",
            (T + H - B) / 2, (T + H - B) / 2, y_label);
    for (int k = 0; k < n_series; k++) {
        const char *col = palette[k % 8];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
        for (int i = 0; i < n_x; i++) {
            if (isnan(s[k].y[i])) continue;
            double xv = log_x ? log2(x[i]) : x[i];
            fprintf(f, "%.1f,%.1f ", PX(xv), PY(s[k].y[i]));
        }
        fprintf(f, "\"/>\n");
        for (int i = 0; i < n_x; i++) {
            if (isnan(s[k].y[i])) continue;
            double xv = log_x ? log2(x[i]) : x[i];
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(xv), PY(s[k].y[i]), col);
        }
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"14\" height=\"4\" fill=\"%s\"/>", W - R + 14, T + 18.0 * k + 4, col);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">%s</text>\n", W - R + 34, T + 18.0 * k + 10, s[k].name);
    }
#undef PX
#undef PY
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : -errno;
}

int svg_heat_map(const char *path, const char *title, const char *const *row_labels,
                 int n_rows, const char *const *col_labels, int n_cols,
                 const double *v, const char *row_axis, const char *col_axis)
{
    FILE *f = fopen(path, "w");
    if (!f) return -errno;
    const double cw = 64, ch = 32, L = 90, T = 50;
    double W = L + cw * n_cols + 20, H = T + ch * n_rows + 50;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"15\">%s</text>\n", L, title);
    for (int r = 0; r < n_rows; r++) {
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%s</text>\n", L - 6, T + ch * r + ch / 2 + 4, row_labels[r]);
        for (int c = 0; c < n_cols; c++) {
            double x = v[(size_t)r * n_cols + c];
            int g = isnan(x) ? 200 : (int)lround(255 * (1 - fmin(1, fmax(0, x))));
            fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"rgb(%d,%d,255)\" stroke=\"white\"/>",
                    L + cw * c, T + ch * r, cw, ch, g, g);
            fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\" fill=\"%s\">%.2f</text>\n",
                    L + cw * c + cw / 2, T + ch * r + ch / 2 + 4, x > 0.5 ? "white" : "black", x);
        }
    }
    for (int c = 0; c < n_cols; c++)
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", L + cw * c + cw / 2, T + ch * n_rows + 16, col_labels[c]);
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">%s</text>\n", L + cw * n_cols / 2, T + ch * n_rows + 36, col_axis);
    fprintf(f, "<text x=\"14\" y=\"%.0f\" transform=\"rotate(-90 14 %.0f)\" text-anchor=\"middle\">%s</text>\n",
            T + ch * n_rows / 2, T + ch * n_rows / 2, row_axis);
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : -errno;
}
