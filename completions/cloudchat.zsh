#compdef cloudchat

_cloudchat_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _CLOUDCHAT_COMPLETE=complete_zsh cloudchat)
}

compdef _cloudchat_completion cloudchat