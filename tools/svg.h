/* svg.h - small SVG charts for reports: a line plot (y against x, one
 * series per name) and a heat map (rows x columns of values in [0, 1]). */
#ifndef KVT_SVG_H
#define KVT_SVG_H

#include <stdio.h>

struct svg_series {
    const char *name;
    const double *y;   /* (n_x); NaN = no point */
};

/* x values on a log2 axis when log_x. Returns 0 or -errno. */
int svg_line_plot(const char *path, const char *title, const char *x_label,
                  const char *y_label, const double *x, int n_x,
                  const struct svg_series *s, int n_series, int log_x);

/* v: (n_rows, n_cols) row-major in [0, 1]; labels per row and column. */
int svg_heat_map(const char *path, const char *title, const char *const *row_labels,
                 int n_rows, const char *const *col_labels, int n_cols,
                 const double *v, const char *row_axis, const char *col_axis);

#endif
