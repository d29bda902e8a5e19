# Sourced by the type-for-type quality benchmarks (types_vs_llama.sh,
# gptq_vs_best.sh), after `cd` to the repo root with $build, $work, $chunks
# and $threads set. Sets $oracle and $model; splits ref-dev's val.txt into
# $work/calib.txt (first half: imatrix and calibration) and $work/eval.txt
# (second half: judging only), and writes llama.cpp's F16 logits on CHUNKS
# chunks of the second half to $work/f16.lgt.
oracle="$(scripts/setup-oracle.sh)"
model=models/ref-dev/ref-dev-f16.gguf
mkdir -p "$work"
zcat models/ref-dev/val.txt.gz > "$work/all.txt"
half=$(( $(wc -c < "$work/all.txt") / 2 ))
head -c "$half" "$work/all.txt" > "$work/calib.txt"
tail -c +"$((half + 1))" "$work/all.txt" > "$work/eval.txt"
"$oracle" eval "$model" --text-file "$work/eval.txt" --ctx 512 --chunks "$chunks" --threads "$threads" \
  --out "$work/f16.lgt" > /dev/null

# make_imatrix PATH N: mixq's imatrix from N chunks of the calibration half (kept when PATH exists).
make_imatrix() { [ -f "$1" ] || "$build/mixq" imatrix "$model" --text "$work/calib.txt" -o "$1" --chunks "$2" -q; }
# field KEY...: the values of these keys of the JSON object on stdin, one line.
field() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);
  console.log(process.argv.slice(1).map(k=>j[k]).join(" "))})' "$@"; }
# The llama_ftype whose base type is the type (with --pure, all tensors get it).
ftype() { case "$1" in Q3_K | Q4_K | Q5_K) echo "$1_M" ;; IQ2_S) echo IQ2_M ;; MXFP4) echo MXFP4_MOE ;; *) echo "$1" ;; esac; }
# The type's name as llama-quantize's --output-tensor-type takes it (q4_K).
llama_name() { echo "$1" | tr 'A-Z' 'a-z' | sed 's/_k$/_K/'; }
