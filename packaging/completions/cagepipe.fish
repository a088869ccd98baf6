# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cagepipe_global_optspecs
	string join \n raw-pipe= c= user= config= env= format= dry-run h/help V/version
end

function __fish_cagepipe_needs_command
	# Figure out if the current invocation already has a command.
	set -l cmd (commandline -opc)
	set -e cmd[1]
	argparse -s (__fish_cagepipe_global_optspecs) -- $cmd 2>/dev/null
	or return
	if set -q argv[1]
		# Also print the command, so this can be used to figure out what it is.
		echo $argv[1]
		return 1
	end
	return 0
end

function __fish_cagepipe_using_subcommand
	set -l cmd (__fish_cagepipe_needs_command)
	test -z "$cmd"
	and return 1
	contains -- $cmd[1] $argv
end

complete -c cagepipe -n "__fish_cagepipe_needs_command" -l raw-pipe -d 'Deliver: TEXT is Exim\'s $address_pipe verbatim, split with Exim\'s rules' -r
complete -c cagepipe -n "__fish_cagepipe_needs_command" -s c -d 'Deliver: run the container\'s /bin/sh -c STRING' -r
complete -c cagepipe -n "__fish_cagepipe_needs_command" -l user -d 'Act for NAME instead of the calling user (root only)' -r
complete -c cagepipe -n "__fish_cagepipe_needs_command" -l config -d 'Read PATH instead of /etc/cagepipe/cagepipe.toml (root only)' -r -F
complete -c cagepipe -n "__fish_cagepipe_needs_command" -l env -d 'Deliver: set Exim\'s variable NAME (LOCAL_PART, SENDER, ...) as Exim would, to reproduce a delivery by hand; only names cagepipe passes on' -r
complete -c cagepipe -n "__fish_cagepipe_needs_command" -l format -d 'check, survey and --dry-run: plain lines (text) or one JSON object (json)' -r -f -a "text\t''
json\t''"
complete -c cagepipe -n "__fish_cagepipe_needs_command" -l dry-run -d 'Resolve and check everything, print the plan, run nothing'
complete -c cagepipe -n "__fish_cagepipe_needs_command" -s h -l help -d 'Print help'
complete -c cagepipe -n "__fish_cagepipe_needs_command" -s V -l version -d 'Print version'
complete -c cagepipe -n "__fish_cagepipe_needs_command" -a "check" -d 'Explain how a delivery for USER (default: the caller) would run; exit 0 if it can'
complete -c cagepipe -n "__fish_cagepipe_needs_command" -a "survey" -d 'Find every pipe delivery configured on this server (~/.forward, DirectAdmin and cPanel aliases) and dry-run each: READY or NEEDS ATTENTION, with the reason (root only; exit 0 when all are ready, 1 when some need attention)'
complete -c cagepipe -n "__fish_cagepipe_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cagepipe -n "__fish_cagepipe_using_subcommand check" -l exim -d 'The Exim binary whose transports are checked (root only; default: the first of /usr/sbin/exim4, /usr/sbin/exim, /usr/exim/bin/exim, /usr/local/sbin/exim)' -r -F
complete -c cagepipe -n "__fish_cagepipe_using_subcommand check" -l exim-config -d 'Check the transports of this Exim configuration (exim -C FILE; root only)' -r -F
complete -c cagepipe -n "__fish_cagepipe_using_subcommand check" -l user -d 'Act for NAME instead of the calling user (root only)' -r
complete -c cagepipe -n "__fish_cagepipe_using_subcommand check" -l config -d 'Read PATH instead of /etc/cagepipe/cagepipe.toml (root only)' -r -F
complete -c cagepipe -n "__fish_cagepipe_using_subcommand check" -l format -d 'check, survey and --dry-run: plain lines (text) or one JSON object (json)' -r -f -a "text\t''
json\t''"
complete -c cagepipe -n "__fish_cagepipe_using_subcommand check" -l dry-run -d 'Resolve and check everything, print the plan, run nothing'
complete -c cagepipe -n "__fish_cagepipe_using_subcommand check" -s h -l help -d 'Print help'
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l aliases -d 'Also read this alias file; OWNERS is the user its pipes run as, or a "domain: user" file (default: the file\'s owner)' -r
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l passwd -d 'The accounts (and their homes) to survey' -r -F
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l group -d 'The groups of those accounts' -r -F
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l directadmin -d 'DirectAdmin\'s DIR/<domain>/aliases, owners in DIR/domainowners' -r -F
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l cpanel -d 'cPanel\'s DIR/valiases/<domain>, owners in DIR/userdomains' -r -F
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l notices -d 'Also write one message (DIR/USER.eml, ready for sendmail -t) to each account with pipes that need attention: what was found, why, what to do; DIR is created mode 0700 (an existing one must be root\'s and writable by nobody else)' -r -F
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l template -d 'Write the notices from this template instead of the built-in English one (see TEMPLATES)' -r -F
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l mail-domain -d 'Notices go to USER@DOMAIN (default: the first line of /etc/mailname, else the host\'s fully qualified name, as hostname -f gives it)' -r
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l contacts -d '"user: address" lines: where to send each account\'s notice instead of USER@DOMAIN' -r -F
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l user -d 'Act for NAME instead of the calling user (root only)' -r
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l config -d 'Read PATH instead of /etc/cagepipe/cagepipe.toml (root only)' -r -F
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l format -d 'check, survey and --dry-run: plain lines (text) or one JSON object (json)' -r -f -a "text\t''
json\t''"
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l no-forward -d 'Do not read users\' ~/.forward files'
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l force -d 'Replace notices already in DIR (without it, an existing one stops the run before anything is written)'
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -l dry-run -d 'Resolve and check everything, print the plan, run nothing'
complete -c cagepipe -n "__fish_cagepipe_using_subcommand survey" -s h -l help -d 'Print help'
complete -c cagepipe -n "__fish_cagepipe_using_subcommand help; and not __fish_seen_subcommand_from check survey help" -f -a "check" -d 'Explain how a delivery for USER (default: the caller) would run; exit 0 if it can'
complete -c cagepipe -n "__fish_cagepipe_using_subcommand help; and not __fish_seen_subcommand_from check survey help" -f -a "survey" -d 'Find every pipe delivery configured on this server (~/.forward, DirectAdmin and cPanel aliases) and dry-run each: READY or NEEDS ATTENTION, with the reason (root only; exit 0 when all are ready, 1 when some need attention)'
complete -c cagepipe -n "__fish_cagepipe_using_subcommand help; and not __fish_seen_subcommand_from check survey help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
