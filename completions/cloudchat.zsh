#compdef cloudchat

_cloudchat() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _CLOUDCHAT_COMPLETE=complete_zsh cloudchat)
}

if [[ $zsh_eval_context[-1] == loadautofunc || $funcstack[1] == _cloudchat ]]; then
  # autoloaded from $fpath on the first TAB: this call is a completion, so complete now
  _cloudchat "$@"
else
  # sourced (. or eval): register for the next TAB
  compdef _cloudchat cloudchat
fi
