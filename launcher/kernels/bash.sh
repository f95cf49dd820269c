__ds_cells=$1 __ds_done=$2
trap ':' INT
# The launcher's requests (a run numbered 0): "checkpoint PATH MAXBYTES" writes the shell's state (its variables,
# exported or not, and arrays; its functions; its working directory) as a script that restores it when sourced;
# "restore PATH" sources one. The shell's own variables (read-only ones, BASH_*, PWD, RANDOM, ...) are not state.
__ds_own='^(BASH.*|BASHOPTS|BASHPID|COLUMNS|COMP_.*|DIRSTACK|EPOCH.*|EUID|FUNCNAME|GROUPS|HIST.*|HOSTNAME|HOSTTYPE|IFS|LINENO|LINES|MACHTYPE|OLDPWD|OPTARG|OPTERR|OPTIND|OSTYPE|PIPESTATUS|PPID|PS[0-4]|PWD|RANDOM|SECONDS|SHELLOPTS|SHLVL|SRANDOM|UID|_|__ds_.*)$'
__ds_checkpoint() {
  local IFS=$' \t\n' __ds_name __ds_decl __ds_flags __ds_tmp="$1.tmp" __ds_sum __ds_size
  {
    for __ds_name in $(compgen -v); do
      [[ $__ds_name =~ $__ds_own ]] && continue
      __ds_decl=$(declare -p "$__ds_name" 2>/dev/null) || continue
      __ds_flags=${__ds_decl#declare -} __ds_flags=${__ds_flags%% *}
      [[ $__ds_flags == *r* ]] && continue
      printf '%s\n' "$__ds_decl"
    done
    declare -f
    printf 'cd -- %q\n' "$PWD"
  } > "$__ds_tmp" 2>/dev/null || { printf 'c {"error":"the state could not be written"}\n' >&"$__ds_done"; return; }
  __ds_sum=$(sha256sum "$__ds_tmp" | cut -d' ' -f1) __ds_size=$(wc -c < "$__ds_tmp")
  if [ "$__ds_size" -gt "$2" ]; then
    rm -f "$__ds_tmp"
    printf 'c {"sha":"%s","bytes":%d,"error":"the state is %d bytes, more than the %d kept"}\n' "$__ds_sum" "$__ds_size" "$__ds_size" "$2" >&"$__ds_done"
  elif [ "$__ds_sum" = "$__ds_last" ]; then
    rm -f "$__ds_tmp"
    printf 'c {"sha":"%s","bytes":%d,"changed":false}\n' "$__ds_sum" "$__ds_size" >&"$__ds_done"
  else
    mv -f "$__ds_tmp" "$1" && __ds_last=$__ds_sum
    printf 'c {"sha":"%s","bytes":%d,"changed":true}\n' "$__ds_sum" "$__ds_size" >&"$__ds_done"
  fi
}
while LC_ALL=C IFS= read -r -N 16 -u "$__ds_cells" __ds_head && [ ${#__ds_head} -eq 16 ]; do
  __ds_len=$((10#${__ds_head:8:8})) __ds_src=
  if [ "$__ds_len" -gt 0 ]; then LC_ALL=C IFS= read -r -N "$__ds_len" -u "$__ds_cells" __ds_src; fi
  if [ "${__ds_head:0:8}" = 00000000 ]; then
    case $__ds_src in
      "checkpoint "*) __ds_args=(${__ds_src#checkpoint }); __ds_checkpoint "${__ds_args[0]}" "${__ds_args[1]}" ;;
      "restore "*)
        if source "${__ds_src#restore }" 2>/dev/null; then __ds_last=$(sha256sum "${__ds_src#restore }" | cut -d' ' -f1); printf 'c {"restored":true}\n' >&"$__ds_done"
        else printf 'c {"error":"the state could not be restored"}\n' >&"$__ds_done"; fi ;;
      *) printf 'c {"error":"unknown request"}\n' >&"$__ds_done" ;;
    esac
    continue
  fi
  eval "$__ds_src"
  printf '%d\n' "$?" >&"$__ds_done"
done
