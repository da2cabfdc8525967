set terminal pngcairo size 960,600 font ',10'
set grid
set key left top
set logscale x
set xlabel 'offered load (INVITEs/s)'
set output 'throughput.png'
set title 'Throughput at the sink vs offered load (signing setups: signed INVITEs only)'
set ylabel 'INVITEs/s at the sink'
set logscale y
plot 'steps-floor-direct.dat' using 1:2 with linespoints title 'floor-direct', \
  'steps-floor-relay.dat' using 1:2 with linespoints title 'floor-relay', \
  'steps-kamailio-forward.dat' using 1:2 with linespoints title 'kamailio-forward', \
  'steps-appliance-forward.dat' using 1:2 with linespoints title 'appliance-forward', \
  'steps-kamailio-sign.dat' using 1:8 with linespoints title 'kamailio-sign', \
  'steps-appliance-sign-soft.dat' using 1:8 with linespoints title 'appliance-sign-soft', \
  'steps-appliance-sign-hsm.dat' using 1:8 with linespoints title 'appliance-sign-hsm', \
  'steps-appliance-sign-hsm-remote.dat' using 1:8 with linespoints title 'appliance-sign-hsm-remote', \
  x with lines dashtype 2 lc rgb 'gray' title 'offered'
set output 'latency-p99.png'
set title 'p99 one-way latency generator → (proxy) → sink (kernel TX → RX stamp) vs offered load'
set ylabel 'p99 latency (µs)'
plot 'steps-floor-direct.dat' using 1:6 with linespoints title 'floor-direct', \
  'steps-floor-relay.dat' using 1:6 with linespoints title 'floor-relay', \
  'steps-kamailio-forward.dat' using 1:6 with linespoints title 'kamailio-forward', \
  'steps-appliance-forward.dat' using 1:6 with linespoints title 'appliance-forward', \
  'steps-kamailio-sign.dat' using 1:6 with linespoints title 'kamailio-sign', \
  'steps-appliance-sign-soft.dat' using 1:6 with linespoints title 'appliance-sign-soft', \
  'steps-appliance-sign-hsm.dat' using 1:6 with linespoints title 'appliance-sign-hsm', \
  'steps-appliance-sign-hsm-remote.dat' using 1:6 with linespoints title 'appliance-sign-hsm-remote'
set output 'latency-floor-direct.png'
set title 'Latency percentiles vs offered load: floor-direct'
set ylabel 'one-way latency, kernel TX → RX stamp (µs)'
plot 'steps-floor-direct.dat' using 1:4 with linespoints title 'p50', 'steps-floor-direct.dat' using 1:5 with linespoints title 'p90', 'steps-floor-direct.dat' using 1:6 with linespoints title 'p99', 'steps-floor-direct.dat' using 1:7 with linespoints title 'p99.9'
set output 'latency-floor-relay.png'
set title 'Latency percentiles vs offered load: floor-relay'
set ylabel 'one-way latency, kernel TX → RX stamp (µs)'
plot 'steps-floor-relay.dat' using 1:4 with linespoints title 'p50', 'steps-floor-relay.dat' using 1:5 with linespoints title 'p90', 'steps-floor-relay.dat' using 1:6 with linespoints title 'p99', 'steps-floor-relay.dat' using 1:7 with linespoints title 'p99.9'
set output 'latency-kamailio-forward.png'
set title 'Latency percentiles vs offered load: kamailio-forward'
set ylabel 'one-way latency, kernel TX → RX stamp (µs)'
plot 'steps-kamailio-forward.dat' using 1:4 with linespoints title 'p50', 'steps-kamailio-forward.dat' using 1:5 with linespoints title 'p90', 'steps-kamailio-forward.dat' using 1:6 with linespoints title 'p99', 'steps-kamailio-forward.dat' using 1:7 with linespoints title 'p99.9'
set output 'latency-appliance-forward.png'
set title 'Latency percentiles vs offered load: appliance-forward'
set ylabel 'one-way latency, kernel TX → RX stamp (µs)'
plot 'steps-appliance-forward.dat' using 1:4 with linespoints title 'p50', 'steps-appliance-forward.dat' using 1:5 with linespoints title 'p90', 'steps-appliance-forward.dat' using 1:6 with linespoints title 'p99', 'steps-appliance-forward.dat' using 1:7 with linespoints title 'p99.9'
set output 'latency-kamailio-sign.png'
set title 'Latency percentiles vs offered load: kamailio-sign'
set ylabel 'one-way latency, kernel TX → RX stamp (µs)'
plot 'steps-kamailio-sign.dat' using 1:4 with linespoints title 'p50', 'steps-kamailio-sign.dat' using 1:5 with linespoints title 'p90', 'steps-kamailio-sign.dat' using 1:6 with linespoints title 'p99', 'steps-kamailio-sign.dat' using 1:7 with linespoints title 'p99.9'
set output 'latency-appliance-sign-soft.png'
set title 'Latency percentiles vs offered load: appliance-sign-soft'
set ylabel 'one-way latency, kernel TX → RX stamp (µs)'
plot 'steps-appliance-sign-soft.dat' using 1:4 with linespoints title 'p50', 'steps-appliance-sign-soft.dat' using 1:5 with linespoints title 'p90', 'steps-appliance-sign-soft.dat' using 1:6 with linespoints title 'p99', 'steps-appliance-sign-soft.dat' using 1:7 with linespoints title 'p99.9'
set output 'latency-appliance-sign-hsm.png'
set title 'Latency percentiles vs offered load: appliance-sign-hsm'
set ylabel 'one-way latency, kernel TX → RX stamp (µs)'
plot 'steps-appliance-sign-hsm.dat' using 1:4 with linespoints title 'p50', 'steps-appliance-sign-hsm.dat' using 1:5 with linespoints title 'p90', 'steps-appliance-sign-hsm.dat' using 1:6 with linespoints title 'p99', 'steps-appliance-sign-hsm.dat' using 1:7 with linespoints title 'p99.9'
set output 'latency-appliance-sign-hsm-remote.png'
set title 'Latency percentiles vs offered load: appliance-sign-hsm-remote'
set ylabel 'one-way latency, kernel TX → RX stamp (µs)'
plot 'steps-appliance-sign-hsm-remote.dat' using 1:4 with linespoints title 'p50', 'steps-appliance-sign-hsm-remote.dat' using 1:5 with linespoints title 'p90', 'steps-appliance-sign-hsm-remote.dat' using 1:6 with linespoints title 'p99', 'steps-appliance-sign-hsm-remote.dat' using 1:7 with linespoints title 'p99.9'
