// CPU time consumed so far, for timing work apart from waiting (benchmarks,
// measure's per-type accounting on a shared machine).
#ifndef MIXQ_BASE_CPU_TIME_H_
#define MIXQ_BASE_CPU_TIME_H_

namespace mixq {

double ThreadCpuSeconds();   // by the calling thread
double ProcessCpuSeconds();  // by all threads of the process

}  // namespace mixq

#endif  // MIXQ_BASE_CPU_TIME_H_
