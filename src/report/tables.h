// Internal to src/report: the data tables the page's charts draw, as JSON rows.
#ifndef MIXQ_REPORT_TABLES_H_
#define MIXQ_REPORT_TABLES_H_

#include <nlohmann/json.hpp>

#include "report/report.h"

namespace mixq::report::internal {

// {"model", "curve", "plans", "evals", "sensitivity", "bits", "validation",
//  "split", ...}: every table of docs/report.md. Corruption when the
// measurement has no units.
Result<nlohmann::json> BuildTables(const ReportInputs& inputs);

}  // namespace mixq::report::internal

#endif  // MIXQ_REPORT_TABLES_H_
